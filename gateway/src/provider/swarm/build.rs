//! Builds from source on Swarm: the context (a template's Dockerfile and
//! files with the function's code, or the function's own Dockerfile
//! folder), plus the static `fwatchdog` (and `busybox`, when the
//! Dockerfile copies it), goes to the Docker engine's build API; the image
//! is tagged `faas/<name>:<digest>`. An image already there under that tag
//! was built from the same source: it is not built again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use crate::build::{BuildError, BuildJob, BuildLog, Built};

/// Where the static binaries an image needs are found: beside the gateway
/// (its image carries `/fwatchdog` and `/busybox`), else on PATH.
fn find(name: &str, fallback: &[&str]) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)));
    beside
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(name)),
        )
        .chain(fallback.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

pub(super) async fn build(
    docker: &Docker,
    fwatchdog: Option<&Path>,
    job: &BuildJob,
    log: &BuildLog,
) -> Result<Built, BuildError> {
    let image = job.image();
    if docker.inspect_image(&image).await.is_ok() {
        log.line(&format!("{image}: built before from the same source"))
            .await;
        return Ok(Built {
            image,
            cached: true,
        });
    }
    let dockerfile = std::fs::read_to_string(job.context.join("Dockerfile")).map_err(|_| {
        BuildError::Invalid("the build context has no Dockerfile to build an image from".into())
    })?;
    if dockerfile.contains("COPY handler ") && !job.context.join("handler").is_file() {
        return Err(BuildError::Invalid(
            "the rust template's image needs its binary built beforehand: faas up builds it when cargo is installed where it runs".into(),
        ));
    }
    let mut extra: Vec<(&str, PathBuf)> = Vec::new();
    let watchdog = fwatchdog
        .map(Path::to_path_buf)
        .or_else(|| find("fwatchdog", &[]))
        .ok_or_else(|| {
            BuildError::Engine(
                "no static fwatchdog to put into the image (beside the gateway, or --fwatchdog)"
                    .into(),
            )
        })?;
    extra.push(("fwatchdog", watchdog));
    if dockerfile.contains("COPY busybox") {
        let busybox = find("busybox", &["/bin/busybox"])
            .ok_or_else(|| BuildError::Engine("no static busybox to put into the image".into()))?;
        extra.push(("busybox", busybox));
    }
    let context = job.context.clone();
    let tar = tokio::task::spawn_blocking(move || archive(&context, &extra))
        .await
        .map_err(|e| BuildError::Engine(e.to_string()))?
        .map_err(|e| BuildError::Engine(format!("cannot pack the build context: {e}")))?;

    let args: HashMap<String, String> = job.build_args.clone().into_iter().collect();
    let labels = HashMap::from([("faas.source-digest".to_owned(), job.digest.clone())]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&image)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&labels)
        .build();
    // A build outlives the API's usual timeout; `build_timeout` bounds it.
    let docker = docker.clone().with_timeout(job.timeout);
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut step: Option<(usize, String)> = None;
    let outcome = tokio::time::timeout(job.timeout, async {
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => return Err(failure(&e.to_string(), step.as_ref())),
            };
            if let Some(text) = info.stream.as_deref() {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Some(parsed) = step_line(line) {
                        step = Some(parsed);
                    }
                    log.line(line).await;
                }
            }
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                log.line(&message).await;
                return Err(failure(&message, step.as_ref()));
            }
        }
        Ok(())
    })
    .await;
    match outcome {
        Err(_) => Err(BuildError::TimedOut(job.timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(Built {
            image,
            cached: false,
        }),
    }
}

/// Pushes the built `image` (`faas/<name>:<tag>`) to `registry` and
/// returns the reference to deploy, by digest
/// (`<registry>/faas/<name>@sha256:…`): every node pulls exactly what was
/// built. Pushing an image the registry has already is quick.
pub(super) async fn push(
    docker: &Docker,
    registry: &str,
    image: &str,
    job: &BuildJob,
    log: &BuildLog,
) -> Result<String, BuildError> {
    let (repository, tag) = image
        .rsplit_once(':')
        .ok_or_else(|| BuildError::Engine(format!("{image} has no tag to push")))?;
    let remote = format!("{registry}/{repository}");
    let options = TagImageOptionsBuilder::default()
        .repo(&remote)
        .tag(tag)
        .build();
    docker
        .tag_image(image, Some(options))
        .await
        .map_err(|e| BuildError::Engine(format!("cannot tag {image} as {remote}:{tag}: {e}")))?;
    log.line(&format!("pushing {remote}:{tag}")).await;
    let docker = docker.clone().with_timeout(job.timeout);
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let refused = |why: &str| {
        BuildError::Registry(format!(
            "cannot push {remote}:{tag} to the registry {registry}: {}",
            faas_common::message::one_line(why)
        ))
    };
    let mut stream = docker.push_image(&remote, Some(options), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| refused(&e.to_string()))?;
        if let Some(detail) = info.error_detail {
            return Err(refused(&detail.message.unwrap_or_default()));
        }
        if let Some(status) = info.status.filter(|s| s.contains("digest:")) {
            log.line(&status).await;
        }
    }
    let pushed = docker
        .inspect_image(&format!("{remote}:{tag}"))
        .await
        .map_err(|e| BuildError::Engine(format!("cannot inspect {remote}:{tag}: {e}")))?;
    pushed
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.starts_with(&format!("{remote}@")))
        .ok_or_else(|| refused("the engine reports no digest for what it pushed"))
}

/// `Step 3/9 : RUN pip install …` → (3, "RUN pip install …").
fn step_line(line: &str) -> Option<(usize, String)> {
    let rest = line.strip_prefix("Step ")?;
    let (numbers, command) = rest.split_once(" : ")?;
    let (n, _) = numbers.split_once('/')?;
    Some((n.trim().parse().ok()?, command.trim().to_owned()))
}

/// A failed build in the words a user acts on: the step that failed, or
/// a missing base image named with how to make it.
fn failure(message: &str, step: Option<&(usize, String)>) -> BuildError {
    let message = faas_common::message::one_line(message);
    if message.contains("pull access denied") || message.contains("No such image") {
        return BuildError::Invalid(format!(
            "{message}: the base image is not on this engine and no registry can be reached (./build.sh base-images makes faas/python-base and faas/node-base; or pass BASE as a build argument)"
        ));
    }
    match step {
        Some((n, command)) => BuildError::StepFailed {
            step: *n,
            command: command.clone(),
            why: message,
        },
        None => BuildError::Engine(message),
    }
}

/// The context folder plus the extra files, as an uncompressed tar.
fn archive(context: &Path, extra: &[(&str, PathBuf)]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", context)?;
    for (name, path) in extra {
        tar.append_path_with_name(path, name)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_steps_are_read_from_dockers_log() {
        assert_eq!(
            step_line("Step 7/11 : RUN python3 runner.py --check"),
            Some((7, "RUN python3 runner.py --check".to_owned()))
        );
        assert_eq!(step_line(" ---> Running in 1f2e"), None);
        let failed = failure(
            "The command '/bin/sh -c python3 runner.py --check' returned a non-zero code: 2",
            Some(&(7, "RUN python3 runner.py --check".into())),
        );
        assert_eq!(
            failed.status(),
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "{failed}"
        );
        assert!(
            failed.to_string().contains("build step 7 failed"),
            "{failed}"
        );
        let missing = failure(
            "pull access denied for faas/python-base, repository does not exist",
            None,
        );
        assert!(
            missing.to_string().contains("./build.sh base-images"),
            "{missing}"
        );
    }
}
