//! Shell completion. `devbox completions SHELL` prints a script that, at each Tab, runs devbox
//! again with `DEVBOX_COMPLETE=SHELL` and the words typed so far; devbox answers from its clap
//! definition (`cli.rs`), and asks the engine for devbox's container names and runs where an
//! option takes one.
//!
//! This is clap_complete's dynamic completion (`CompleteEnv`, feature `unstable-dynamic`), not
//! its static scripts: a static script knows no value that only the engine knows, and teaching
//! it one would mean patching the generated text of each shell's script. The dynamic engine
//! serves bash, zsh, fish, PowerShell and elvish from the one definition, so completion cannot
//! drift from the parser. Its API is marked unstable: the version is pinned in Cargo.toml, and
//! the integration tests run bash's completion function against the real binary.

use std::ffi::OsString;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{CompleteEnv, Shells};

use crate::engine::{Engine, Target};

/// devbox's own variable, not clap's default `COMPLETE`: one set for another program must not
/// turn devbox into a completer.
const VAR: &str = "DEVBOX_COMPLETE";

/// How long a Tab waits for the engine before it completes without the engine's values.
const ENGINE_WAIT: Duration = Duration::from_secs(3);

/// When a completion script called devbox, answers it and ends the process; otherwise returns.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(crate::cli::Cli::command)
        .var(VAR)
        .complete();
}

/// The script that makes `shell` (one of clap_complete's, as the command line allows) complete
/// devbox's command line. It runs this very binary, by its full path, at each Tab.
pub(crate) fn script(shell: &str) -> String {
    let shells = Shells::builtins();
    let completer = shells
        .completer(shell)
        .expect("the command line offers only the shells clap_complete knows");
    let program = std::env::current_exe().map_or_else(
        |_| "devbox".to_string(),
        |path| path.to_string_lossy().into_owned(),
    );
    let mut script = Vec::new();
    completer
        .write_registration(VAR, "devbox", "devbox", &program, &mut script)
        .expect("writing into memory works");
    String::from_utf8_lossy(&script).into_owned()
}

/// The runs on the engine (any project's, as `devbox jobs RUN` finds them), newest first:
/// each id, with its name and state as help, and each name given with `--name`.
pub(crate) fn runs() -> Vec<CompletionCandidate> {
    from_engine(|engine| async move {
        let runs = crate::run::jobs::list(&engine, None, &crate::labels::Owners::of(false))
            .await
            .ok()?;
        let mut candidates = Vec::new();
        for crate::run::jobs::Found { record, .. } in runs {
            candidates.push(
                CompletionCandidate::new(&record.id)
                    .help(Some(format!("{} ({})", record.name, record.state).into())),
            );
            if record.name != crate::run::default_name(&record.id) {
                candidates.push(
                    CompletionCandidate::new(&record.name)
                        .help(Some(format!("run {}", record.id).into())),
                );
            }
        }
        Some(candidates)
    })
}

/// The names of devbox's dev containers on the engine.
pub(crate) fn containers() -> Vec<CompletionCandidate> {
    from_engine(|engine| async move {
        let names = crate::container::names(&engine).await.ok()?;
        Some(names.into_iter().map(CompletionCandidate::new).collect())
    })
}

/// What `ask` finds on the engine the command line names (`--context`, else as always), or
/// nothing when the engine does not answer in time: a Tab never prints an error into the
/// shell's line.
fn from_engine<F, Fut>(ask: F) -> Vec<CompletionCandidate>
where
    F: FnOnce(Engine) -> Fut,
    Fut: Future<Output = Option<Vec<CompletionCandidate>>>,
{
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let context = context_in(std::env::args_os());
    let found = runtime.block_on(async {
        let target = Target::resolve(context.as_deref()).ok()?;
        tokio::time::timeout(ENGINE_WAIT, async {
            let engine = Engine::connect(&target).await.ok()?;
            ask(engine).await
        })
        .await
        .ok()
        .flatten()
    });
    // A request still blocked on a dead engine is abandoned, not waited for.
    runtime.shutdown_background();
    found.unwrap_or_default()
}

/// The `--context NAME` of the command line being completed (the words after `--`).
fn context_in(args: impl IntoIterator<Item = OsString>) -> Option<String> {
    let words: Vec<String> = args
        .into_iter()
        .skip_while(|arg| arg != "--")
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    words.iter().enumerate().find_map(|(i, word)| {
        if word == "--context" {
            words.get(i + 1).cloned()
        } else {
            word.strip_prefix("--context=").map(String::from)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_engine_is_the_one_the_command_line_names() {
        assert_eq!(
            context_in(words("/bin/devbox -- devbox --context lab jobs logs ")),
            Some("lab".to_string())
        );
        assert_eq!(
            context_in(words("/bin/devbox -- devbox jobs --context=gpu2 logs")),
            Some("gpu2".to_string())
        );
        assert_eq!(context_in(words("/bin/devbox -- devbox jobs logs ")), None);
        // Only the words being completed count, not the completer's own arguments.
        assert_eq!(context_in(words("--context x")), None);
    }

    #[test]
    fn every_shell_offered_has_a_script_that_calls_this_binary() {
        for shell in Shells::builtins().names() {
            let script = script(shell);
            assert!(script.contains(VAR), "{shell}: {script}");
            let program = std::env::current_exe().unwrap();
            let name = program.file_name().unwrap().to_string_lossy().into_owned();
            assert!(script.contains(&name), "{shell}: {script}");
        }
    }
}
