import type { Command } from 'commander';
import { KINDS } from '../api/kinds.js';
import { CliError } from './client.js';
import type { CommandContext } from './context.js';

/** One command of the tree as the completion script needs it. */
export interface CompletionNode {
  /** Space-separated command path: '' for the root, 'rollout status'. */
  path: string;
  names: string[];
  subcommands: CompletionNode[];
  flags: string[];
  /** Flags that consume the next word. */
  valueFlags: string[];
}

/** Walk a commander program into the shape the completion script is generated from. */
export function completionTree(cmd: Command, path = ''): CompletionNode {
  const flags: string[] = [];
  const valueFlags: string[] = [];
  for (const o of cmd.options) {
    for (const f of [o.short, o.long]) {
      if (!f) continue;
      flags.push(f);
      if (o.required || o.optional) valueFlags.push(f);
    }
  }
  if (path) flags.push('-h', '--help');
  const subcommands = cmd.commands
    .filter((c) => c.name() !== 'help' && !(c as unknown as { _hidden?: boolean })._hidden)
    .map((c) => completionTree(c, path ? `${path} ${c.name()}` : c.name()));
  return { path, names: [cmd.name(), ...cmd.aliases()], subcommands, flags: [...new Set(flags)], valueFlags: [...new Set(valueFlags)] };
}

function walk(n: CompletionNode, fn: (n: CompletionNode) => void): void {
  fn(n);
  for (const s of n.subcommands) walk(s, fn);
}

const q = (s: string): string => `"${s.replace(/["\\$`]/g, '\\$&')}"`;

/** The kinds offered after get/describe/delete: singular and plural names. */
export function kindWords(): string[] {
  return [...new Set(KINDS.flatMap((k) => [k.singular, k.plural]))].sort();
}

/**
 * The bash completion script (zsh loads the same through bashcompinit). It completes verbs and
 * subcommands, flags per command, kinds, object names (`drover get KIND -o name` at completion
 * time, in the namespace given with -n), `-n` namespaces, `-o` formats and `-f` files.
 */
export function bashCompletion(root: CompletionNode, bin = 'drover'): string {
  const subCases: string[] = [];
  const subsCases: string[] = [];
  const flagCases: string[] = [];
  const valueCases: string[] = [];
  walk(root, (n) => {
    for (const s of n.subcommands) {
      subCases.push(`    ${s.names.map((name) => q(`${n.path}|${name}`)).join('|')}) echo ${q(s.path)} ;;`);
    }
    if (n.subcommands.length) subsCases.push(`    ${q(n.path)}) echo ${q(n.subcommands.map((s) => s.names[0]).join(' '))} ;;`);
    if (n.flags.length) flagCases.push(`    ${q(n.path)}) echo ${q(n.flags.join(' '))} ;;`);
    if (n.valueFlags.length) valueCases.push(`    ${n.valueFlags.map((f) => q(`${n.path}|${f}`)).join('|')}) return 0 ;;`);
  });
  return `# ${bin} completion for bash (and zsh, through bashcompinit).
#   bash:  source <(${bin} completion bash)     or save it under /etc/bash_completion.d/${bin}
#   zsh:   source <(${bin} completion zsh)

__${bin}_kinds=${q(kindWords().join(' '))}

# The canonical command path after word $2 at path $1, or nothing when $2 is no subcommand there.
__${bin}_sub() {
  case "$1|$2" in
${subCases.join('\n')}
  esac
}

# The subcommands of a command path.
__${bin}_subs() {
  case "$1" in
${subsCases.join('\n')}
  esac
}

__${bin}_flags() {
  case "$1" in
${flagCases.join('\n')}
  esac
}

# Whether flag $2 of command path $1 takes a value (the next word).
__${bin}_takes_value() {
  case "$1|$2" in
${valueCases.join('\n')}
  esac
  return 1
}

# Names of the objects of kind $2, asked of the server at completion time.
__${bin}_names() {
  if [ -n "$__${bin}_ns" ]; then
    "$1" get "$2" -n "$__${bin}_ns" -o name 2>/dev/null | sed 's|^[^/]*/||'
  else
    "$1" get "$2" -o name 2>/dev/null | sed 's|^[^/]*/||'
  fi
}

_${bin}() {
  local cmd="\${1:-${bin}}" cur="$2" prev="$3"
  local path="" skip="" w sub idx=0 npos=0 kindarg="" kinds="" names=""
  __${bin}_ns=""
  COMPREPLY=()
  for w in "\${COMP_WORDS[@]}"; do
    if [ "$idx" -ge "$COMP_CWORD" ]; then break; fi
    idx=$((idx + 1))
    if [ "$idx" -eq 1 ]; then continue; fi
    if [ -n "$skip" ]; then
      if [ "$skip" = ns ]; then __${bin}_ns="$w"; fi
      skip=""
      continue
    fi
    case "$w" in
      -n|--namespace) skip=ns; continue ;;
      -*) if __${bin}_takes_value "$path" "$w"; then skip=1; fi; continue ;;
    esac
    if [ "$npos" -eq 0 ]; then
      sub="$(__${bin}_sub "$path" "$w")"
      if [ -n "$sub" ]; then path="$sub"; continue; fi
    fi
    npos=$((npos + 1))
    if [ "$npos" -eq 1 ]; then kindarg="$w"; fi
  done

  case "$prev" in
    -n|--namespace) COMPREPLY=( $(compgen -W "$(__${bin}_names "$cmd" namespaces)" -- "$cur") ); return 0 ;;
  esac
  if __${bin}_takes_value "$path" "$prev"; then
    case "$prev" in
      -o|--output) COMPREPLY=( $(compgen -W "json yaml wide name" -- "$cur") ) ;;
      -f|--filename) COMPREPLY=( $(compgen -f -- "$cur") ) ;;
      --sort-by) COMPREPLY=( $(compgen -W "cpu memory" -- "$cur") ) ;;
    esac
    return 0
  fi
  case "$cur" in
    -*) COMPREPLY=( $(compgen -W "$(__${bin}_flags "$path")" -- "$cur") ); return 0 ;;
  esac
  local subs
  subs="$(__${bin}_subs "$path")"
  if [ -n "$subs" ] && [ "$npos" -eq 0 ]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
    return 0
  fi
  case "$path" in
    get|describe|delete|label|annotate) kinds="$__${bin}_kinds" ;;
    "rollout status"|"rollout restart") kinds="deployment daemonset" ;;
    "rollout history"|"rollout undo"|"rollout pause"|"rollout resume") kinds="deployment" ;;
    scale) kinds="deployment replicaset job" ;;
    "set image") kinds="deployment daemonset replicaset pod" ;;
    logs|exec|"top pod") names=pods ;;
    cordon|uncordon|drain|"top node") names=nodes ;;
    completion) COMPREPLY=( $(compgen -W "bash zsh" -- "$cur") ); return 0 ;;
  esac
  if [ -n "$names" ]; then
    if [ "$npos" -eq 0 ] || [ "$path" = cordon ] || [ "$path" = uncordon ]; then
      COMPREPLY=( $(compgen -W "$(__${bin}_names "$cmd" "$names")" -- "$cur") )
    fi
    return 0
  fi
  if [ -n "$kinds" ]; then
    case "$cur" in
      */*)
        local k="\${cur%%/*}"
        COMPREPLY=( $(compgen -P "$k/" -W "$(__${bin}_names "$cmd" "$k")" -- "\${cur#*/}") )
        ;;
      *)
        if [ "$npos" -eq 0 ]; then
          COMPREPLY=( $(compgen -W "$kinds" -- "$cur") )
        else
          case "$kindarg" in
            */*) ;;
            *) COMPREPLY=( $(compgen -W "$(__${bin}_names "$cmd" "$kindarg")" -- "$cur") ) ;;
          esac
        fi
        ;;
    esac
  fi
  return 0
}

complete -F _${bin} ${bin}
`;
}

/** zsh: the bash script through zsh's bash-completion emulation, which handles COMP_WORDS and compgen. */
export function zshCompletion(root: CompletionNode, bin = 'drover'): string {
  return `#compdef ${bin}
# ${bin} completion for zsh:  source <(${bin} completion zsh)
(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(root, bin).split('\n').filter((l) => !l.startsWith('#')).join('\n')}`;
}

export function registerCompletion(program: Command, ctx: CommandContext): void {
  program
    .command('completion')
    .description('print a shell completion script: source <(drover completion bash)')
    .argument('<shell>', 'bash or zsh')
    .action((shell: string) => {
      const tree = completionTree(program);
      if (shell === 'bash') ctx.io.stdout(bashCompletion(tree, program.name()));
      else if (shell === 'zsh') ctx.io.stdout(zshCompletion(tree, program.name()));
      else throw new CliError(`unsupported shell type "${shell}": use bash or zsh`);
    });
}
