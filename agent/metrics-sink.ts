/**
 * What the agent's reconciler reports for /metrics: the duration of each reconcile (list, plan,
 * dispatch to the pods' workers and status report; the workers' runtime calls run after it), in
 * seconds, whether it succeeded or failed. The agent's entry point hands in an implementation.
 */
export interface AgentMetricsSink { reconcile(seconds: number): void }
