//! Functions from source: `faas up`, `faas build --remote` and `faas
//! deploy NAME --from DIR|FILE` pack the function's code with its template
//! into a build context (a tar.gz: `deployment.json`, `build-args.json`,
//! `context/`), send it to the gateway's `POST /system/builds`, show the
//! build log as it streams back, and wait for the function to be ready.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use faas_common::api::Deployment;
use faas_common::stack::{FunctionSpec, Stack};
use ureq::http::{Method, header};

use crate::client::{Client, DEFAULT_TIMEOUT, Subject, Wait, check, to_json};
use crate::error::{Error, Result, io_reason};
use crate::wait::{self, Target};
use crate::{Context, output};

/// Folders never sent: version control, caches, virtualenvs (the build
/// installs requirements itself), build output. `node_modules` is sent:
/// vendored modules are how a node function gets its dependencies where
/// npm's registry cannot be reached.
const SKIPPED: &[&str] = &[".git", "__pycache__", "target", ".venv", "venv"];
/// The most a packed context may weigh before the CLI refuses to send it
/// (the gateway has its own `max_build_context`).
const MAX_PACKED: usize = 512 * 1024 * 1024;
/// Deepest folder nesting followed (links may loop).
const MAX_DEPTH: usize = 32;

/// What to build: a function's code, its template, how to deploy it.
pub struct Source {
    pub deployment: Deployment,
    /// The template's language, or `dockerfile`.
    pub lang: String,
    /// The function's folder, or a single file.
    pub path: PathBuf,
    pub build_args: BTreeMap<String, String>,
}

impl Source {
    /// Whether this source's template is `language` (or an alias of it).
    fn lang_is(&self, language: &str) -> bool {
        faas_common::templates::find(&self.lang).is_some_and(|t| t.template.language == language)
    }

    /// A stack function with `lang:` and `handler:`.
    pub fn from_stack(name: &str, spec: &FunctionSpec, stack_dir: &Path) -> Result<Source> {
        let lang = spec.lang.clone().ok_or_else(|| {
            Error::new(format!("function {name:?} has no lang: to build it from"))
        })?;
        let handler = spec.handler.as_deref().unwrap_or(".");
        Ok(Source {
            deployment: spec.deployment(name),
            lang,
            path: stack_dir.join(handler),
            build_args: spec.build_args.clone(),
        })
    }
}

/// Guesses a language from a folder's files or a file's extension.
pub fn guess_lang(path: &Path) -> Option<&'static str> {
    if path.is_file() {
        return match path.extension()?.to_str()? {
            "py" => Some("python"),
            "js" | "mjs" | "cjs" => Some("node"),
            "sh" => Some("bash"),
            _ => None,
        };
    }
    let has = |name: &str| path.join(name).exists();
    if has("Dockerfile") {
        Some("dockerfile")
    } else if has("Cargo.toml") {
        Some("rust")
    } else if has("package.json") || has("handler.js") || has("index.js") {
        Some("node")
    } else if has("fn.sh") || has("handler.sh") {
        Some("bash")
    } else {
        let python = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "py"));
        python.then_some("python")
    }
}

/// The build context for `source`, as tar.gz bytes. Deterministic: the
/// same files give the same bytes (sorted, no times or owners).
pub fn pack(source: &Source) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let code_root = if source.lang == "dockerfile" {
        if !source.path.join("Dockerfile").is_file() {
            return Err(Error::new(format!(
                "{} has no Dockerfile (lang: dockerfile builds the folder with its own Dockerfile)",
                source.path.display()
            )));
        }
        "context".to_owned()
    } else {
        let embedded = crate::new::template(&source.lang)?;
        for file in embedded.files() {
            let executable = file.path.extension().is_some_and(|e| e == "sh");
            files.push((
                format!("context/{}", file.path.display()),
                file.contents.to_vec(),
                executable,
            ));
        }
        format!("context/{}", embedded.template.handler)
    };
    if source.lang_is("rust") && source.path.is_dir() {
        // An image FROM scratch cannot compile: the binary is built here.
        files.push((
            "context/handler".to_owned(),
            prebuild_rust(&source.path)?,
            true,
        ));
    }
    if source.path.is_file() {
        let name = source
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (contents, executable) = read(&source.path)?;
        files.push((format!("{code_root}/{name}"), contents, executable));
    } else if source.path.is_dir() {
        collect(&source.path, &code_root, 0, &mut files)?;
    } else {
        return Err(Error::new(format!(
            "{} does not exist: it should hold the function's code",
            source.path.display()
        )));
    }
    files.push((
        "deployment.json".to_owned(),
        to_json(&source.deployment)?,
        false,
    ));
    if !source.build_args.is_empty() {
        files.push((
            "build-args.json".to_owned(),
            to_json(&source.build_args)?,
            false,
        ));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut size = 0usize;
    for (path, contents, executable) in &files {
        size += contents.len();
        if size > MAX_PACKED {
            return Err(Error::new(format!(
                "{} is larger than {} MiB: too big to send as a build context",
                source.path.display(),
                MAX_PACKED >> 20
            )));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(if *executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, contents.as_slice())
            .map_err(|e| Error::new(format!("cannot pack {path}: {e}")))?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(|e| Error::new(format!("cannot pack the build context: {e}")))
}

/// The rust template's binary, built here from the function's Cargo
/// package: static (the musl target when rustup has it, else glibc with a
/// static C runtime, as ./build.sh does), so it runs FROM scratch.
fn prebuild_rust(dir: &Path) -> Result<Vec<u8>> {
    const MUSL: &str = "x86_64-unknown-linux-musl";
    const GNU: &str = "x86_64-unknown-linux-gnu";
    let has_musl = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == MUSL)
        });
    let triple = if has_musl { MUSL } else { GNU };
    let target_dir = dir.join("target");
    let mut cargo = std::process::Command::new("cargo");
    cargo
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            triple,
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    if !has_musl {
        cargo.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    let status = cargo.status().map_err(|e| {
        Error::new(format!(
            "the rust template is compiled where faas runs, and cargo cannot run: {}",
            io_reason(&e)
        ))
    })?;
    if !status.success() {
        return Err(Error::new(format!(
            "cargo build of {} failed (its output is above)",
            dir.display()
        )));
    }
    let binary = target_dir.join(triple).join("release").join("handler");
    std::fs::read(&binary).map_err(|e| {
        Error::new(format!(
            "cannot read {} (is the package named handler?): {}",
            binary.display(),
            io_reason(&e)
        ))
    })
}

fn read(path: &Path) -> Result<(Vec<u8>, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |e: std::io::Error| {
        Error::new(format!("cannot read {}: {}", path.display(), io_reason(&e)))
    };
    let meta = std::fs::metadata(path).map_err(failed)?;
    let contents = std::fs::read(path).map_err(failed)?;
    Ok((contents, meta.permissions().mode() & 0o111 != 0))
}

fn collect(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut Vec<(String, Vec<u8>, bool)>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::new(format!(
            "{} is nested more than {MAX_DEPTH} folders deep (a link loop?)",
            dir.display()
        )));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::new(format!("cannot read {}: {}", dir.display(), io_reason(&e))))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| Error::new(format!("cannot read {}: {}", dir.display(), io_reason(&e))))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                collect(&path, &format!("{prefix}/{name}"), depth + 1, files)?;
            }
        } else if path.is_file() {
            let (contents, executable) = read(&path)?;
            files.push((format!("{prefix}/{name}"), contents, executable));
        }
    }
    Ok(())
}

/// What the gateway said a build made.
#[derive(Debug, serde::Deserialize)]
pub struct BuildResult {
    pub function: String,
    pub image: String,
    #[serde(default)]
    pub cached: bool,
    #[serde(default)]
    pub deployed: Option<String>,
}

/// Sends `source` to the gateway to build (and, with `deploy`, deploy),
/// printing the log to stderr as it comes.
pub fn build_remote(client: &Client, source: &Source, deploy: bool) -> Result<BuildResult> {
    let name = source.deployment.service.as_str();
    let body = pack(source)?;
    let path = if deploy {
        "/system/builds"
    } else {
        "/system/builds?deploy=false"
    };
    let request = client
        .request(Method::POST, path)
        .header(header::CONTENT_TYPE, "application/gzip")
        .header(header::ACCEPT, "application/x-ndjson")
        .body(body)
        .map_err(|e| Error::new(format!("cannot build a request for {path}: {e}")))?;
    let response = check(
        client.exchange(request, true, Wait::Headers)?,
        Subject::Function(name),
    )
    .map_err(|e| Error::new(format!("cannot build {name:?}: {e}")))?;
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let mut stderr = std::io::stderr();
    for line in reader.lines() {
        let line = line.map_err(|e| {
            Error::new(format!(
                "the build log of {name:?} broke off: {}",
                io_reason(&e)
            ))
        })?;
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(text) = event.get("stream").and_then(|s| s.as_str()) {
            use std::io::Write;
            let _ = writeln!(stderr, "{name}: {text}");
        } else if let Some(error) = event.get("error").and_then(|s| s.as_str()) {
            return Err(Error::new(format!("cannot build {name:?}: {error}")));
        } else if let Some(result) = event.get("result") {
            return serde_json::from_value(result.clone()).map_err(|e| {
                Error::new(format!("the gateway's build answer is not understood: {e}"))
            });
        }
    }
    Err(Error::new(format!(
        "the gateway ended the build of {name:?} without a result"
    )))
}

/// Builds each source through the gateway, deploys it, and waits until
/// every one is ready (unless `no_wait`).
pub fn up(ctx: &Context, client: &Client, sources: &[Source], no_wait: bool) -> Result<()> {
    let mut ready = Vec::new();
    for source in sources {
        let result = build_remote(client, source, true)?;
        output::print(&format!(
            "{} {}: {} ({}){}\n",
            match result.deployed.as_deref() {
                Some("updated") => "Updated",
                _ => "Deployed",
            },
            result.function,
            format_args!("{}/function/{}", client.gateway(), result.function),
            result.image,
            if result.cached {
                ", unchanged source"
            } else {
                ""
            },
        ))?;
        ready.push((result.function, Target::AllReplicas));
    }
    if no_wait {
        return Ok(());
    }
    wait::until_ready(client, &ready, ctx.timeout_or(DEFAULT_TIMEOUT))
}

/// `KEY=VALUE` pairs from `--build-arg`.
pub fn parse_build_args(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::new(format!(
                "--build-arg {pair:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// The stack's functions to build (those with `lang:`), and those that
/// only deploy an image.
pub fn stack_sources(
    stack: &Stack,
    file: &Path,
    filter: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<(Vec<Source>, Vec<Deployment>)> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut sources = Vec::new();
    let mut images = Vec::new();
    for (name, spec) in crate::deploy::select(stack, filter, &file.display().to_string())? {
        if spec.lang.is_some() && spec.skip_build != Some(true) {
            let mut source = Source::from_stack(name, spec, dir)?;
            source.build_args.extend(build_args.clone());
            sources.push(source);
        } else {
            images.push(spec.deployment(name));
        }
    }
    Ok((sources, images))
}

/// Which stack functions to build, and with what.
#[derive(Debug, clap::Args)]
pub struct StackSources {
    /// The stack file (faas-cli format)
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "yaml",
        default_value = "stack.yml"
    )]
    file: PathBuf,

    /// Only the functions whose name matches (`*` matches any run of characters)
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,

    /// A build argument for every function (KEY=VALUE; repeatable); wins
    /// over the stack file's build_args
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_arg: Vec<String>,
}

impl StackSources {
    /// The stack, and its functions to build and to deploy as they are.
    fn load(&self) -> Result<(Stack, Vec<Source>, Vec<Deployment>)> {
        let stack = Stack::load(&self.file).map_err(|e| Error::new(e.to_string()))?;
        let build_args = parse_build_args(&self.build_arg)?;
        let (sources, images) =
            stack_sources(&stack, &self.file, self.filter.as_deref(), &build_args)?;
        Ok((stack, sources, images))
    }
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackSources,

    /// Return once deployed, without waiting for the replicas
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    stack: StackSources,

    /// Build on the gateway (its Docker engine, or its host for the
    /// process provider) instead of with the Docker engine here
    #[arg(long)]
    remote: bool,
}

/// `faas up`: every function of the stack built from source through the
/// gateway and deployed (image-only functions are deployed as they are).
pub fn up_command(ctx: &Context, args: UpArgs) -> Result<()> {
    let (stack, sources, images) = args.stack.load()?;
    let fallback = stack.provider.as_ref().and_then(|p| p.gateway.as_deref());
    let client = ctx.client_with(fallback, DEFAULT_TIMEOUT)?;
    let mut ready = Vec::new();
    for deployment in &images {
        crate::deploy::deploy_one(&client, deployment, true)?;
        output::print(&format!(
            "Deployed {}: {}/function/{}\n",
            deployment.service,
            client.gateway(),
            deployment.service
        ))?;
        ready.push((deployment.service.clone(), Target::AllReplicas));
    }
    up(ctx, &client, &sources, args.no_wait)?;
    if args.no_wait {
        return Ok(());
    }
    wait::until_ready(&client, &ready, ctx.timeout_or(DEFAULT_TIMEOUT))
}

/// `faas build`: the stack's functions built (not deployed).
pub fn build_command(ctx: &Context, args: BuildArgs) -> Result<()> {
    let (stack, sources, _) = args.stack.load()?;
    if sources.is_empty() {
        return Err(Error::new(format!(
            "no function in {} has a lang: to build from",
            args.stack.file.display()
        )));
    }
    let client = if args.remote {
        let fallback = stack.provider.as_ref().and_then(|p| p.gateway.as_deref());
        Some(ctx.client_with(fallback, DEFAULT_TIMEOUT)?)
    } else {
        docker_answers()?;
        None
    };
    for source in &sources {
        let result = match &client {
            Some(client) => build_remote(client, source, false)?,
            None => build_local(source)?,
        };
        output::print(&format!(
            "Built {}: {}{}\n",
            result.function,
            result.image,
            if result.cached {
                " (unchanged source)"
            } else {
                ""
            }
        ))?;
    }
    Ok(())
}

/// Whether a Docker engine answers here.
fn docker_answers() -> Result<()> {
    let answered = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if answered {
        Ok(())
    } else {
        Err(Error::new(
            "no Docker engine answers here: add --remote to build on the gateway",
        ))
    }
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A static binary an image needs: `FAAS_FWATCHDOG` / `FAAS_BUSYBOX`,
/// else beside `faas` (where `./build.sh` puts them), else on PATH, else
/// `fallback`.
fn find_binary(name: &str, fallback: Option<&str>) -> Option<PathBuf> {
    let named = std::env::var_os(format!("FAAS_{}", name.to_ascii_uppercase())).map(PathBuf::from);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)));
    named
        .into_iter()
        .chain(beside)
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(name)),
        )
        .chain(fallback.map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Builds `source` with the Docker engine here (`docker build`), into the
/// image the gateway would make of it: the same context, digest and tag,
/// so a later `faas up` finds it instead of building again.
fn build_local(source: &Source) -> Result<BuildResult> {
    let name = source.deployment.service.as_str();
    let packed = pack(source)?;
    let dir =
        Scratch(std::env::temp_dir().join(format!("faas-build-{}-{name}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    tar::Archive::new(flate2::read::GzDecoder::new(&packed[..]))
        .unpack(&dir.0)
        .map_err(|e| Error::new(format!("cannot stage the build of {name:?}: {e}")))?;
    let context = dir.0.join("context");
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile"))
        .map_err(|_| Error::new(format!("{name:?} has no Dockerfile to build an image from")))?;
    let digest = faas_common::templates::source_digest(&context, &source.build_args)
        .map_err(|e| Error::new(format!("cannot read the build of {name:?}: {e}")))?;
    let image = faas_common::templates::image_tag(name, &digest);
    let exists = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return Ok(BuildResult {
            function: name.to_owned(),
            image,
            cached: true,
            deployed: None,
        });
    }
    let mut extras = vec![("fwatchdog", None)];
    if dockerfile.contains("COPY busybox") {
        extras.push(("busybox", Some("/bin/busybox")));
    }
    for (binary, fallback) in extras {
        let found = find_binary(binary, fallback).ok_or_else(|| {
            Error::new(format!(
                "no static {binary} beside faas or on PATH to put into the image (./build.sh makes them), or add --remote"
            ))
        })?;
        std::fs::copy(&found, context.join(binary)).map_err(|e| {
            Error::new(format!(
                "cannot copy {}: {}",
                found.display(),
                io_reason(&e)
            ))
        })?;
    }
    let mut docker = std::process::Command::new("docker");
    docker
        .args(["build", "-t", &image, "--label"])
        .arg(format!("faas.source-digest={digest}"));
    for (key, value) in &source.build_args {
        docker.arg("--build-arg").arg(format!("{key}={value}"));
    }
    // Docker's own output is the build log.
    let status = docker
        .arg(&context)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| Error::new(format!("cannot run docker: {}", io_reason(&e))))?;
    if !status.success() {
        return Err(Error::new(format!(
            "docker build of {name:?} failed (its output is above)"
        )));
    }
    Ok(BuildResult {
        function: name.to_owned(),
        image,
        cached: false,
        deployed: None,
    })
}

/// `faas deploy NAME --from PATH`: one folder or file, tinyFaaS and
/// FaaSpot style.
pub fn deploy_from(
    ctx: &Context,
    name: &str,
    from: &Path,
    lang: Option<&str>,
    build_args: &[String],
    no_wait: bool,
) -> Result<()> {
    crate::client::check_function_name(name)?;
    if !from.exists() {
        return Err(Error::new(format!("{} does not exist", from.display())));
    }
    let lang = match lang {
        Some(lang) => lang.to_owned(),
        None => guess_lang(from)
            .ok_or_else(|| {
                Error::new(format!(
                    "cannot tell the language of {}: name it with --lang ({})",
                    from.display(),
                    faas_common::templates::languages().join(", ")
                ))
            })?
            .to_owned(),
    };
    let source = Source {
        deployment: Deployment {
            service: name.to_owned(),
            ..Default::default()
        },
        lang,
        path: from.to_path_buf(),
        build_args: parse_build_args(build_args)?,
    };
    let client = ctx.client()?;
    up(ctx, &client, &[source], no_wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(bytes: &[u8]) -> Vec<(String, u32)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_context_is_the_template_plus_the_code_and_the_deployment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("handler.py"), "def handle(e, c): pass\n").unwrap();
        std::fs::create_dir(dir.path().join("__pycache__")).unwrap();
        std::fs::write(dir.path().join("__pycache__/x.pyc"), "x").unwrap();
        let source = Source {
            deployment: Deployment {
                service: "hello".into(),
                ..Default::default()
            },
            lang: "python3-http".into(),
            path: dir.path().to_path_buf(),
            build_args: BTreeMap::from([("A".into(), "1".into())]),
        };
        let packed = pack(&source).unwrap();
        let names: Vec<String> = unpack(&packed).into_iter().map(|(n, _)| n).collect();
        for want in [
            "build-args.json",
            "context/Dockerfile",
            "context/function/handler.py",
            "context/runner.py",
            "context/template.yml",
            "deployment.json",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("__pycache__")),
            "{names:?}"
        );
        assert_eq!(
            pack(&source).unwrap(),
            packed,
            "the same files pack the same bytes"
        );
    }

    #[test]
    fn languages_are_guessed_from_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "").unwrap();
            p
        };
        assert_eq!(guess_lang(&file("hello-world.py")), Some("python"));
        assert_eq!(guess_lang(&file("index.js")), Some("node"));
        assert_eq!(guess_lang(&file("fn.sh")), Some("bash"));
        assert_eq!(guess_lang(&file("notes.txt")), None);
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("fn.py"), "").unwrap();
        assert_eq!(guess_lang(folder.path()), Some("python"));
        std::fs::write(folder.path().join("Dockerfile"), "").unwrap();
        assert_eq!(guess_lang(folder.path()), Some("dockerfile"));
    }

    #[test]
    fn build_args_are_key_value_pairs() {
        let args = parse_build_args(&["A=1".into(), "B=x=y".into()]).unwrap();
        assert_eq!(args["B"], "x=y");
        assert!(parse_build_args(&["=1".into()]).is_err());
        assert!(
            parse_build_args(&["A".into()])
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
    }
}
