// The exit status of `migprobe check` and of `kubectl migprobe check` alike (a script reads either the same way).

export const EXIT_MIGRATABLE = 0;
export const EXIT_NOT_MIGRATABLE = 1;
export const EXIT_ERROR = 2;
