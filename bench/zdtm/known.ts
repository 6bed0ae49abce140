// Known causes of the disagreements the conformance bench (bench/conformance.ts) found and could not fix in the
// engine: zdtm static test name -> why migprobe's verdict differs from the real C/R. Printed in the report.

export const KNOWN: Readonly<Record<string, string>> = {};
