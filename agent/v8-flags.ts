/**
 * V8 settings for `drover agent` on a small device. The entry point (src/main.ts) applies them before any
 * of the agent's code is compiled: node reads no V8 flags from the single binary's own command line, and
 * `--lite-mode` is not allowed in NODE_OPTIONS, so they are set from inside (v8.setFlagsFromString), which
 * V8 honours when no code has been compiled under the old ones yet.
 *
 * `--lite-mode` (no optimizing compiler, feedback allocated lazily, a heap sized for memory rather than
 * throughput) took the idle agent from ~90 to ~74 MiB RSS (bench/results/agent-footprint-*.md). Its cost:
 * interpreted code, so validating a desired state of 10 pods takes ~0.5 ms instead of ~0.3 ms and one of
 * 100 pods a few ms instead of under one; the idle agent's CPU did not change measurably. The server is
 * never run with them (its API is CPU-bound), nor is the agent inside `drover server`.
 */
import { setFlagsFromString } from 'node:v8';

export const AGENT_V8_FLAGS = ['--lite-mode'] as const;

/** DROVER_AGENT_V8_FLAGS replaces the defaults (space-separated; empty: none, V8's own defaults). */
export function agentV8Flags(env: NodeJS.ProcessEnv = process.env): string[] {
  const given = env.DROVER_AGENT_V8_FLAGS;
  if (given === undefined) return [...AGENT_V8_FLAGS];
  return given.split(/\s+/).filter(Boolean);
}

/** Applies agentV8Flags(): call first thing in the process, before the agent's modules are loaded. */
export function applyAgentV8Flags(env: NodeJS.ProcessEnv = process.env): string[] {
  const flags = agentV8Flags(env);
  for (const f of flags) setFlagsFromString(f);
  return flags;
}
