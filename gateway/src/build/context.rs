//! A build request's body: a tar.gz holding `deployment.json` (the
//! function's deployment, OpenFaaS's shape) and `context/` (what to build:
//! a template's files with the function's code in its handler folder, or a
//! folder with its own Dockerfile). Unpacked with every bound checked:
//! size, entry count, plain files and folders only, no path out of the
//! folder. The digest names the context's content, so the same source
//! gets the same tag.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use faas_common::api::Deployment;
use faas_common::templates::{TEMPLATE_FILE, Template};

/// Most entries a context may hold.
pub const MAX_ENTRIES: usize = 20_000;
/// The context folder inside the archive.
pub const CONTEXT_DIR: &str = "context";
pub const DEPLOYMENT_FILE: &str = "deployment.json";
/// Optional: `{"NAME": "value"}`, the build's arguments.
pub const BUILD_ARGS_FILE: &str = "build-args.json";

/// What was wrong with a build request's archive.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Bigger unpacked than allowed: a 413.
    #[error("the build context unpacks to more than {0} bytes (max_build_context x 4)")]
    TooLarge(u64),
    /// The caller's mistake: a 400.
    #[error("{0}")]
    Invalid(String),
    /// Ours (the disk): a 500.
    #[error("cannot unpack the build context: {0}")]
    Io(std::io::Error),
}

/// An unpacked, checked build request.
#[derive(Debug)]
pub struct Unpacked {
    pub deployment: Deployment,
    /// `<dir>/context`.
    pub context: PathBuf,
    /// The context's template, when it has a `template.yml`.
    pub template: Option<Template>,
    /// Hex SHA-256 over the context's paths, modes and contents.
    pub digest: String,
    /// The Dockerfile's ARGs, the host steps' environment.
    pub build_args: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> ContextError {
    ContextError::Invalid(message.into())
}

/// Unpacks the tar.gz `archive` into `dir` (which must exist and be
/// empty), at most `max_unpacked` bytes of files.
pub fn unpack(archive: &Path, dir: &Path, max_unpacked: u64) -> Result<Unpacked, ContextError> {
    let file = std::fs::File::open(archive).map_err(ContextError::Io)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut total: u64 = 0;
    let mut count = 0usize;
    let entries = tar
        .entries()
        .map_err(|e| invalid(format!("the build context is not a tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| invalid(format!("the build context is not a tar.gz archive: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(invalid(format!(
                "the build context has more than {MAX_ENTRIES} entries"
            )));
        }
        let raw = entry
            .path()
            .map_err(|e| invalid(format!("an entry's path is unreadable: {e}")))?
            .into_owned();
        let relative = safe_path(&raw)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dir.join(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(ContextError::Io)?;
            continue;
        }
        if !kind.is_file() {
            return Err(invalid(format!(
                "{}: only files and folders may be in a build context (no links or devices)",
                relative.display()
            )));
        }
        total = total.saturating_add(entry.header().size().unwrap_or(u64::MAX));
        if total > max_unpacked {
            return Err(ContextError::TooLarge(max_unpacked));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(ContextError::Io)?;
        }
        let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
        // Never more than the header said, whatever the stream holds.
        let size = entry.header().size().unwrap_or(0);
        write_file(&target, &mut (&mut entry).take(size), executable)?;
    }
    finish(dir)
}

/// What every build request shares once its files are in `dir`: the
/// deployment, the build arguments, the context with a template (and a
/// handler in its folder) or a Dockerfile, and the digest.
fn finish(dir: &Path) -> Result<Unpacked, ContextError> {
    let deployment_path = dir.join(DEPLOYMENT_FILE);
    let text = std::fs::read(&deployment_path)
        .map_err(|_| invalid(format!("the build context has no {DEPLOYMENT_FILE}")))?;
    let deployment: Deployment = serde_json::from_slice(&text)
        .map_err(|e| invalid(format!("malformed JSON ({DEPLOYMENT_FILE}): {e}")))?;
    let build_args = match std::fs::read(dir.join(BUILD_ARGS_FILE)) {
        Err(_) => BTreeMap::new(),
        Ok(text) => serde_json::from_slice(&text).map_err(|e| {
            invalid(format!(
                "{BUILD_ARGS_FILE} must be an object of strings: {e}"
            ))
        })?,
    };
    let context = dir.join(CONTEXT_DIR);
    if !context.is_dir() {
        return Err(invalid(format!(
            "the build context has no {CONTEXT_DIR}/ folder (the source to build)"
        )));
    }
    let template = match std::fs::read_to_string(context.join(TEMPLATE_FILE)) {
        Ok(text) => {
            Some(Template::parse(&text).map_err(|e| invalid(format!("{TEMPLATE_FILE}: {e}")))?)
        }
        Err(_) => None,
    };
    match &template {
        Some(t) => {
            let handler = context.join(&t.handler);
            let empty = std::fs::read_dir(&handler).map_or(true, |mut d| d.next().is_none());
            if empty {
                return Err(invalid(format!(
                    "no handler: the {} template's code goes in {}/, which is missing or empty",
                    t.language, t.handler
                )));
            }
        }
        None if !context.join("Dockerfile").is_file() => {
            return Err(invalid(format!(
                "the build context has neither a {TEMPLATE_FILE} nor a Dockerfile: nothing says how to build it"
            )));
        }
        None => {}
    }
    let digest =
        faas_common::templates::source_digest(&context, &build_args).map_err(ContextError::Io)?;
    Ok(Unpacked {
        deployment,
        context,
        template,
        digest,
        build_args,
    })
}

fn write_file(target: &Path, from: &mut impl Read, executable: bool) -> Result<(), ContextError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(ContextError::Io)?;
    }
    let mut out = std::fs::File::create(target).map_err(ContextError::Io)?;
    std::io::copy(from, &mut out).map_err(ContextError::Io)?;
    set_mode(target, if executable { 0o755 } else { 0o644 })
}

/// tinyFaaS's upload body (`/upload` there): the function's folder as a
/// base64 zip, its environment (`python3`, `nodejs`, `binary`, or one of
/// our languages) and its number of handlers (`threads`, our replicas).
#[derive(Debug, serde::Deserialize)]
struct TinyFaasUpload {
    name: String,
    env: String,
    #[serde(default = "one")]
    threads: u64,
    zip: String,
    /// Newer tinyFaaS: `["KEY=value", …]`, the function's environment.
    #[serde(default)]
    envs: Vec<String>,
    /// Ours (the notebook client's): the deployment's limits, requests,
    /// labels and annotations, as in `POST /system/functions`.
    #[serde(default)]
    limits: Option<faas_common::api::Resources>,
    #[serde(default)]
    requests: Option<faas_common::api::Resources>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

/// A tinyFaaS upload body (JSON, in `body`) turned into a build context in
/// `dir`: the embedded template for its environment, the zip's files in
/// the template's handler folder, a deployment with `threads` replicas.
pub fn from_tinyfaas(body: &Path, dir: &Path, max_unpacked: u64) -> Result<Unpacked, ContextError> {
    use base64::Engine;
    let text = std::fs::read(body).map_err(ContextError::Io)?;
    let upload: TinyFaasUpload = serde_json::from_slice(&text).map_err(|e| {
        invalid(format!(
            "malformed JSON (a tinyFaaS upload: name, env, threads, zip): {e}"
        ))
    })?;
    let embedded = faas_common::templates::find(&upload.env).ok_or_else(|| {
        invalid(format!(
            "unknown env {:?}: use python3, nodejs or binary (or one of {})",
            upload.env,
            faas_common::templates::languages().join(", ")
        ))
    })?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(upload.zip.trim())
        .map_err(|e| invalid(format!("zip is not base64: {e}")))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| invalid(format!("zip is not a zip archive: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "the zip has more than {MAX_ENTRIES} entries"
        )));
    }
    let context = dir.join(CONTEXT_DIR);
    let handler = context.join(&embedded.template.handler);
    std::fs::create_dir_all(&handler).map_err(ContextError::Io)?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| invalid(format!("zip entry {i} is unreadable: {e}")))?;
        let name = entry.name().to_owned();
        let relative = entry
            .enclosed_name()
            .ok_or_else(|| invalid(format!("{name}: a zip's paths must stay inside it")))?;
        let mode = entry.unix_mode().unwrap_or(0o644);
        if entry.is_dir() {
            std::fs::create_dir_all(handler.join(relative)).map_err(ContextError::Io)?;
            continue;
        }
        if mode & 0o170000 != 0 && mode & 0o170000 != 0o100000 {
            return Err(invalid(format!(
                "{name}: only files and folders may be in the zip (no links or devices)"
            )));
        }
        total = total.saturating_add(entry.size());
        if total > max_unpacked {
            return Err(ContextError::TooLarge(max_unpacked));
        }
        let size = entry.size();
        write_file(
            &handler.join(relative),
            &mut (&mut entry).take(size),
            mode & 0o111 != 0,
        )?;
    }
    for file in embedded.files() {
        let executable = file.path.extension().is_some_and(|e| e == "sh");
        write_file(
            &context.join(&file.path),
            &mut &file.contents[..],
            executable,
        )?;
    }
    let mut env_vars = std::collections::BTreeMap::new();
    for pair in &upload.envs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("envs: {pair:?} is not KEY=value")))?;
        env_vars.insert(key.to_owned(), value.to_owned());
    }
    let mut labels = upload.labels;
    labels
        .entry("faas.scale.min".to_owned())
        .or_insert_with(|| upload.threads.to_string());
    let deployment = Deployment {
        service: upload.name,
        env_vars,
        labels,
        annotations: upload.annotations,
        limits: upload.limits,
        requests: upload.requests,
        ..Default::default()
    };
    let json = serde_json::to_vec(&deployment).map_err(|e| invalid(e.to_string()))?;
    std::fs::write(dir.join(DEPLOYMENT_FILE), json).map_err(ContextError::Io)?;
    finish(dir)
}

/// A path inside the folder: plain names only (`./` allowed), never
/// absolute or climbing out.
fn safe_path(raw: &Path) -> Result<PathBuf, ContextError> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => {
                return Err(invalid(format!(
                    "{}: a build context's paths must stay inside it",
                    raw.display()
                )));
            }
        }
    }
    Ok(out)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ContextError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(ContextError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path, contents, mode.
    type Entry<'a> = (&'a str, &'a [u8], u32);

    fn archive(entries: &[Entry]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let gz = flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, data, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        file
    }

    const DEPLOYMENT: &[u8] = br#"{"service":"hello"}"#;
    const TEMPLATE: &[u8] =
        b"language: python\ndescription: d\nfprocess: python3 runner.py\nhandler: function\nsample: handler.py\n";

    #[test]
    fn a_template_context_unpacks_with_its_deployment_and_digest() {
        let tgz = archive(&[
            ("deployment.json", DEPLOYMENT, 0o644),
            ("context/template.yml", TEMPLATE, 0o644),
            (
                "context/function/handler.py",
                b"def handle(e, c): pass\n",
                0o644,
            ),
            ("context/function/run.sh", b"#!/bin/sh\n", 0o755),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let unpacked = unpack(tgz.path(), dir.path(), 1 << 20).unwrap();
        assert_eq!(unpacked.deployment.service, "hello");
        assert_eq!(unpacked.template.unwrap().language, "python");
        assert_eq!(unpacked.digest.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("context/function/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "the executable bit survives");
    }

    #[test]
    fn the_digest_follows_content_not_archive_order() {
        let a = archive(&[
            ("deployment.json", DEPLOYMENT, 0o644),
            ("context/Dockerfile", b"FROM scratch\n", 0o644),
            ("context/a.txt", b"a", 0o644),
        ]);
        let b = archive(&[
            ("context/a.txt", b"a", 0o644),
            ("context/Dockerfile", b"FROM scratch\n", 0o644),
            ("deployment.json", br#"{"service":"other"}"#, 0o644),
        ]);
        let c = archive(&[
            ("deployment.json", DEPLOYMENT, 0o644),
            ("context/Dockerfile", b"FROM scratch\n", 0o644),
            ("context/a.txt", b"b", 0o644),
        ]);
        let [da, db, dc] = [a, b, c].map(|t| {
            let dir = tempfile::tempdir().unwrap();
            unpack(t.path(), dir.path(), 1 << 20).unwrap().digest
        });
        assert_eq!(da, db);
        assert_ne!(da, dc);
    }

    #[test]
    fn paths_out_of_the_folder_are_refused() {
        for bad in ["../evil", "context/../../evil"] {
            // tar's own builder refuses `..`; write the name into the header.
            let file = tempfile::NamedTempFile::new().unwrap();
            let gz =
                flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..bad.len()].copy_from_slice(bad.as_bytes());
            header.set_size(1);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append(&header, &b"x"[..]).unwrap();
            tar.into_inner().unwrap().finish().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(file.path(), dir.path(), 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(err.contains("must stay inside"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_contexts_are_named() {
        let cases: [(&[Entry], &str); 4] = [
            (
                &[("context/Dockerfile", b"FROM scratch", 0o644)],
                "no deployment.json",
            ),
            (
                &[("deployment.json", DEPLOYMENT, 0o644)],
                "no context/ folder",
            ),
            (
                &[
                    ("deployment.json", DEPLOYMENT, 0o644),
                    ("context/x", b"x", 0o644),
                ],
                "neither a template.yml nor a Dockerfile",
            ),
            (
                &[
                    ("deployment.json", DEPLOYMENT, 0o644),
                    ("context/template.yml", TEMPLATE, 0o644),
                ],
                "no handler",
            ),
        ];
        for (entries, want) in cases {
            let tgz = archive(entries);
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(tgz.path(), dir.path(), 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let not_gzip = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_gzip.path(), b"hello").unwrap();
        let err = unpack(not_gzip.path(), dir.path(), 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a tar.gz"), "{err}");
    }

    fn upload(entries: &[(&str, &str)], symlink: Option<&str>) -> tempfile::NamedTempFile {
        use base64::Engine;
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, text) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        if let Some(name) = symlink {
            zip.add_symlink(name, "/etc/passwd", options).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        let body = serde_json::json!({
            "name": "tiny",
            "env": "python3",
            "threads": 3,
            "zip": base64::engine::general_purpose::STANDARD.encode(bytes),
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body.to_string()).unwrap();
        file
    }

    #[test]
    fn a_tinyfaas_upload_becomes_a_template_context() {
        let body = upload(
            &[("fn.py", "def fn(i, h): return i\n"), ("lib/x.py", "")],
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let unpacked = from_tinyfaas(body.path(), dir.path(), 1 << 20).unwrap();
        assert_eq!(unpacked.deployment.service, "tiny");
        assert_eq!(unpacked.deployment.labels["faas.scale.min"], "3");
        assert_eq!(unpacked.template.unwrap().language, "python");
        assert!(dir.path().join("context/function/fn.py").is_file());
        assert!(dir.path().join("context/function/lib/x.py").is_file());
        assert!(dir.path().join("context/runner.py").is_file());
    }

    #[test]
    fn an_upload_may_carry_limits_labels_and_annotations() {
        use base64::Engine;
        use std::io::Write;
        let body = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("f.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"def f(request, context): return {}\n")
            .unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let json = serde_json::json!({
            "name": "f", "env": "python", "zip": base64::engine::general_purpose::STANDARD.encode(bytes),
            "envs": ["FAAS_HANDLER=f.py:f"],
            "limits": {"memory": "256m"}, "labels": {"team": "lab"}, "annotations": {"by": "notebook"},
        });
        std::fs::write(body.path(), json.to_string()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = from_tinyfaas(body.path(), dir.path(), 1 << 20)
            .unwrap()
            .deployment;
        assert_eq!(d.limits.unwrap().memory.as_deref(), Some("256m"));
        assert_eq!(d.labels["team"], "lab");
        assert_eq!(d.labels["faas.scale.min"], "1");
        assert_eq!(d.annotations["by"], "notebook");
        assert_eq!(d.env_vars["FAAS_HANDLER"], "f.py:f");
    }

    #[test]
    fn a_tinyfaas_zip_may_not_escape_or_link() {
        let dir = tempfile::tempdir().unwrap();
        let body = upload(&[("../evil.py", "x")], None);
        let err = from_tinyfaas(body.path(), dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("must stay inside"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let body = upload(&[("fn.py", "x")], Some("passwd"));
        let err = from_tinyfaas(body.path(), dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("no links"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let body = upload(&[("fn.py", &"x".repeat(5000))], None);
        assert!(matches!(
            from_tinyfaas(body.path(), dir.path(), 1000),
            Err(ContextError::TooLarge(1000))
        ));
    }

    #[test]
    fn an_archive_bigger_unpacked_than_allowed_is_too_large() {
        let big = vec![0u8; 10_000];
        let tgz = archive(&[
            ("deployment.json", DEPLOYMENT, 0o644),
            ("context/big", &big, 0o644),
        ]);
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(tgz.path(), dir.path(), 5_000),
            Err(ContextError::TooLarge(5_000))
        ));
    }
}
