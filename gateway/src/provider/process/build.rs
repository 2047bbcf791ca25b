//! Builds from source for the process provider: the template's host steps
//! (`build:` in `template.yml`: install requirements into the function's
//! own folder, check the handler loads, compile) run with `sh` in the
//! function's build folder, `<state_dir>/builds/<name>-<digest>`. A built
//! folder is kept: the same source deploys again without building, and
//! the image name `faas/<name>:<digest>` finds it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::build::{BuildError, BuildJob, BuildLog, Built};

/// Marks a folder whose build finished.
const BUILT_MARK: &str = ".built";

/// The folder a build of `function` from `digest` (the tag) lives in.
pub(super) fn folder(builds_dir: &Path, function: &str, tag: &str) -> PathBuf {
    // The tag is a fixed-length suffix, so names cannot collide; a name
    // of dots stays a plain file name.
    builds_dir.join(format!("{function}-{tag}"))
}

/// The built folder an image names (`faas/<name>:<tag>`), if this
/// provider built it.
pub(super) fn built_folder(builds_dir: &Path, function: &str, image: &str) -> Option<PathBuf> {
    let (repository, tag) = image.rsplit_once(':')?;
    if repository != format!("faas/{}", function.to_ascii_lowercase())
        || tag.is_empty()
        || !tag.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let dir = folder(builds_dir, function, tag);
    dir.join(BUILT_MARK).is_file().then_some(dir)
}

pub(super) async fn build(
    builds_dir: &Path,
    job: &BuildJob,
    log: &BuildLog,
) -> Result<Built, BuildError> {
    let image = job.image();
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t).to_owned();
    let Some(template) = &job.template else {
        return Err(BuildError::Invalid(
            "the process provider builds from templates (template.yml); a Dockerfile needs the swarm provider".into(),
        ));
    };
    if template.fprocess.is_none() {
        return Err(BuildError::Invalid(format!(
            "the {} template runs only as an image: use the swarm provider",
            template.language
        )));
    }
    let done = folder(builds_dir, &job.function, &tag);
    if done.join(BUILT_MARK).is_file() {
        log.line(&format!("{image}: built before from the same source"))
            .await;
        return Ok(Built {
            image,
            cached: true,
        });
    }
    let work = builds_dir.join(format!(
        "{}-{tag}.partial-{}",
        job.function,
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::rename(&job.context, &work)
        .map_err(|e| BuildError::Engine(format!("cannot move the build context: {e}")))?;
    let result = run_steps(&work, job, &template.build, log).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let finished =
        std::fs::write(work.join(BUILT_MARK), image.as_bytes()).and_then(
            |()| match std::fs::rename(&work, &done) {
                // Built meanwhile by an earlier gateway: keep that one.
                Err(_) if done.join(BUILT_MARK).is_file() => std::fs::remove_dir_all(&work),
                other => other,
            },
        );
    finished.map_err(|e| BuildError::Engine(format!("cannot keep the build: {e}")))?;
    Ok(Built {
        image,
        cached: false,
    })
}

async fn run_steps(
    dir: &Path,
    job: &BuildJob,
    steps: &[String],
    log: &BuildLog,
) -> Result<(), BuildError> {
    let deadline = Instant::now() + job.timeout;
    for (i, step) in steps.iter().enumerate() {
        log.line(&format!("Step {}/{}: {step}", i + 1, steps.len()))
            .await;
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(step)
            .current_dir(dir)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| {
                [
                    "PATH",
                    "HOME",
                    "LANG",
                    "CARGO_HOME",
                    "RUSTUP_HOME",
                    "RUSTUP_TOOLCHAIN",
                    "PIP_INDEX_URL",
                    "http_proxy",
                    "https_proxy",
                    "no_proxy",
                ]
                .iter()
                .any(|keep| k == keep)
            }))
            .envs(&job.build_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| BuildError::Engine(format!("cannot run sh for step {}: {e}", i + 1)))?;
        let pid = child.id();
        let out = child.stdout.take().map(BufReader::new);
        let err = child.stderr.take().map(BufReader::new);
        let relay = async {
            let mut out = out.map(|r| r.lines());
            let mut err = err.map(|r| r.lines());
            loop {
                tokio::select! {
                    line = async { out.as_mut()?.next_line().await.ok().flatten() }, if out.is_some() => match line {
                        Some(line) => log.line(&line).await,
                        None => out = None,
                    },
                    line = async { err.as_mut()?.next_line().await.ok().flatten() }, if err.is_some() => match line {
                        Some(line) => log.line(&line).await,
                        None => err = None,
                    },
                    else => break,
                }
            }
            child.wait().await
        };
        let status = match tokio::time::timeout_at(deadline.into(), relay).await {
            Ok(status) => status.map_err(|e| {
                BuildError::Engine(format!("step {} could not be waited on: {e}", i + 1))
            })?,
            Err(_) => {
                if let Some(pid) = pid {
                    // SAFETY: signals the step's own process group.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                return Err(BuildError::TimedOut(job.timeout));
            }
        };
        if !status.success() {
            let why = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            };
            return Err(BuildError::StepFailed {
                step: i + 1,
                command: step.clone(),
                why,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_this_provider_built_name_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let built = folder(dir.path(), "Hello", "0123456789ab");
        std::fs::create_dir_all(&built).unwrap();
        std::fs::write(built.join(BUILT_MARK), "x").unwrap();
        assert_eq!(
            built_folder(dir.path(), "Hello", "faas/hello:0123456789ab"),
            Some(built)
        );
        for other in [
            "faas/hello:latest",
            "faas/other:0123456789ab",
            "faas/hello:fedcba987654",
            "hello",
        ] {
            assert_eq!(built_folder(dir.path(), "Hello", other), None, "{other}");
        }
    }
}
