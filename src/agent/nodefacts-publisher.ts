// The agent's node facts publisher: at start-up and then every --facts-interval, it measures this node's facts
// (CRIU, kernel, CPU, free memory) and writes them into the MigrationNode named after the node, creating it
// when missing (a deleted one comes back on the next attempt). A failed attempt is logged and retried with
// backoff (nodefacts.ts retryDelay); it never stops the agent. It writes metadata once (on create) and
// status always, never spec: spec.factsOverride is the administrator's.
//
// Everything that touches the world is injected (the measurement, the API calls, the clock, the log), so the
// unit test drives it with a fake clock.

import type { NodeFacts } from '../engine/index.ts';
import { observedFactsOf, type MigrationNode, type MigrationNodeStatus } from '../api/migrationnode.ts';
import type { Clock, TimerHandle } from '../kube/clock.ts';
import { isConflict, safeMessage } from '../kube/errors.ts';
import type { Logger } from '../kube/logger.ts';
import { newMigrationNode, publishedStatus, retryDelay } from './nodefacts.ts';

/** The API calls the publisher makes (kube-migrationnode.ts implements them). */
export interface MigrationNodeApi {
  /** The Node's UID and the runtime it reports; undefined when there is no such Node. */
  node(name: string, signal?: AbortSignal): Promise<{ uid: string; containerRuntime?: string } | undefined>;
  /** The MigrationNode, or undefined when there is none. */
  get(name: string, signal?: AbortSignal): Promise<MigrationNode | undefined>;
  /** Creates it; rejects with 409 when it exists already. */
  create(obj: MigrationNode, signal?: AbortSignal): Promise<MigrationNode>;
  /** Server-side apply of the status subresource with the agent's field manager. */
  applyStatus(name: string, status: MigrationNodeStatus, signal?: AbortSignal): Promise<MigrationNode>;
}

export interface PublisherDeps {
  nodeName: string;
  agentVersion: string;
  intervalMs: number;
  /** Measures this node's facts (the engine's collectNodeFacts). */
  measure: () => Promise<NodeFacts>;
  api: MigrationNodeApi;
  clock: Clock;
  log: Logger;
}

export class NodeFactsPublisher {
  private readonly d: PublisherDeps;
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private failures = 0;
  private published = 0;
  private readonly abort = new AbortController();

  constructor(deps: PublisherDeps) {
    this.d = deps;
  }

  /** Publishes now, then keeps publishing until stop(). */
  start(): void {
    this.schedule(0);
  }

  /** Cancels the next attempt and the one in flight (its requests are aborted), and waits for it to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.d.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.running;
  }

  /** Successful publishes so far (for logs and tests). */
  get publishCount(): number {
    return this.published;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.d.clock.setTimeout(() => {
      this.timer = undefined;
      this.running = this.attempt().finally(() => {
        this.running = undefined;
      });
    }, ms);
  }

  private async attempt(): Promise<void> {
    let delay: number;
    try {
      await this.publishOnce(this.abort.signal);
      this.failures = 0;
      this.published++;
      delay = retryDelay(this.d.intervalMs, 0);
    } catch (err) {
      if (this.stopped) return;
      this.failures++;
      delay = retryDelay(this.d.intervalMs, this.failures, err);
      this.d.log.warn('could not publish this node\'s MigrationNode; retrying', { error: safeMessage(err), failures: this.failures, retryInMs: delay });
    }
    this.schedule(delay);
  }

  /**
   * One attempt: measure, make sure the object exists (created owned by the Node), apply the status. A failed
   * measurement is still written (Published False, last good facts kept), then thrown, so it is retried.
   */
  async publishOnce(signal?: AbortSignal): Promise<void> {
    const name = this.d.nodeName;
    let facts: NodeFacts | undefined;
    let measureError: Error | undefined;
    try {
      facts = await this.d.measure();
    } catch (e) {
      measureError = e instanceof Error ? e : new Error(String(e));
    }
    const node = await this.d.api.node(name, signal);
    if (node === undefined) throw new Error(`there is no Node ${name} (--node-name): its MigrationNode is created once the Node exists`);
    let current = await this.d.api.get(name, signal);
    if (current === undefined) {
      try {
        current = await this.d.api.create(newMigrationNode({ name, uid: node.uid }), signal);
        this.d.log.info('created this node\'s MigrationNode', { migrationNode: name });
      } catch (e) {
        if (!isConflict(e)) throw e;
        current = await this.d.api.get(name, signal);
        if (current === undefined) throw e;
      }
    }
    const status = publishedStatus({
      current,
      measured: facts !== undefined ? { facts: observedFactsOf(facts, node.containerRuntime) } : { error: safeMessage(measureError) },
      agentVersion: this.d.agentVersion,
      nowMs: this.d.clock.now(),
    });
    await this.d.api.applyStatus(name, status, signal);
    if (measureError !== undefined) throw measureError;
    const first = this.published === 0;
    this.d.log[first ? 'info' : 'debug']('published this node\'s facts', { migrationNode: name, kernel: facts?.kernelRelease, criu: facts?.criuVersion });
  }
}
