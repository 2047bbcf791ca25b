//! The function templates (`templates/` in the repository), embedded so the
//! CLI can write a new function and the gateway can build one without the
//! repository at hand, and their `template.yml` format.
//!
//! A template folder holds its `template.yml`, the files a build puts
//! beside the function's code (a runner, a Dockerfile) and, under its
//! `handler` folder, the sample handler `faas new` starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};
use serde::Deserialize;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../templates");

/// Folders that running or building a template in place leaves behind
/// (bytecode, dependencies, build output): never part of a template.
const LEFTOVERS: &[&str] = &["__pycache__", "node_modules", "target", "python"];

/// The file naming a template and saying how to run and build it.
pub const TEMPLATE_FILE: &str = "template.yml";

/// A template's `template.yml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub language: String,
    pub description: String,
    /// What runs the function, from the built folder; none for
    /// `dockerfile` (the image says).
    #[serde(default)]
    pub fprocess: Option<String>,
    /// The watchdog's environment for this language (`mode`, …); a
    /// function's own environment wins.
    #[serde(default, deserialize_with = "crate::stack::scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// The folder the function's code goes in, inside the built folder.
    pub handler: String,
    /// The sample handler's main file, inside `handler`.
    pub sample: String,
    /// The dependency file, inside `handler`, if the language has one.
    #[serde(default)]
    pub dependencies: Option<String>,
    /// Host build steps (`sh -c`, from the built folder) for builds without
    /// an image; each must succeed.
    #[serde(default)]
    pub build: Vec<String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let template: Template = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let handler = Path::new(&template.handler);
        if template.handler.is_empty()
            || handler.is_absolute()
            || handler.components().any(|c| c.as_os_str() == "..")
        {
            return Err(format!(
                "handler must be a folder inside the template, not {:?}",
                template.handler
            ));
        }
        Ok(template)
    }
}

/// One embedded template.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub template: Template,
    dir: &'static Dir<'static>,
}

/// A file of an embedded template: its path inside the template folder.
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    pub contents: &'static [u8],
}

impl Embedded {
    /// The template's own files (runner, Dockerfile, template.yml), not the
    /// sample handler.
    pub fn files(&self) -> Vec<File> {
        let handler = self.dir.path().join(&self.template.handler);
        self.all_files()
            .into_iter()
            .filter(|f| !self.dir.path().join(&f.path).starts_with(&handler))
            .collect()
    }

    /// The sample handler's files, relative to the handler folder.
    pub fn sample(&self) -> Vec<File> {
        self.all_files()
            .into_iter()
            .filter_map(|f| {
                let inside = f.path.strip_prefix(&self.template.handler).ok()?;
                Some(File {
                    path: inside.to_path_buf(),
                    contents: f.contents,
                })
            })
            .collect()
    }

    fn all_files(&self) -> Vec<File> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir];
        while let Some(dir) = stack.pop() {
            // What running a template in place leaves behind is not part of it.
            if !std::ptr::eq(dir, self.dir)
                && dir
                    .path()
                    .file_name()
                    .is_some_and(|n| LEFTOVERS.iter().any(|l| n == *l))
            {
                continue;
            }
            for file in dir.files() {
                out.push(File {
                    path: file
                        .path()
                        .strip_prefix(self.dir.path())
                        .unwrap_or(file.path())
                        .to_path_buf(),
                    contents: file.contents(),
                });
            }
            stack.extend(dir.dirs());
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

/// Names a build's source: SHA-256 over every file under `root` in path
/// order (its path, whether it is executable, its length, its bytes; not
/// times, owners or an archive's order), then the build arguments. The
/// CLI and the gateway compute it alike, so an image built by either is
/// found by both.
pub fn source_digest(
    root: &Path,
    build_args: &BTreeMap<String, String>,
) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        let meta = std::fs::metadata(&file)?;
        hash.update(relative.as_os_str().as_encoded_bytes());
        hash.update([0, u8::from(meta.permissions().mode() & 0o111 != 0)]);
        hash.update(meta.len().to_le_bytes());
        let mut reader = std::fs::File::open(&file)?;
        std::io::copy(&mut reader, &mut hash)?;
    }
    // Other arguments, another build.
    for (key, value) in build_args {
        hash.update([1]);
        hash.update(key.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// The image a build of `function` from `digest` is tagged with:
/// `faas/<name>:<first 12 hex digits>` (Docker wants lower case).
pub fn image_tag(function: &str, digest: &str) -> String {
    format!(
        "faas/{}:{}",
        function.to_ascii_lowercase(),
        &digest[..digest.len().min(12)]
    )
}

/// Other names people know a language by: faas-cli's (`python3-http`,
/// `node20`), tinyFaaS's upload environments (`python3`, `nodejs`,
/// `binary`).
const ALIASES: &[(&str, &str)] = &[
    ("python3", "python"),
    ("python3-http", "python"),
    ("python3-flask", "python"),
    ("py", "python"),
    ("nodejs", "node"),
    ("node20", "node"),
    ("node18", "node"),
    ("javascript", "node"),
    ("js", "node"),
    ("binary", "bash"),
    ("sh", "bash"),
    ("shell", "bash"),
    ("dockerfile", "dockerfile"),
];

/// Every embedded template, by language.
pub fn all() -> Vec<Embedded> {
    let mut out: Vec<Embedded> = TEMPLATES
        .dirs()
        .filter_map(|dir| {
            let text = dir
                .get_file(dir.path().join(TEMPLATE_FILE))?
                .contents_utf8()?;
            let template = Template::parse(text)
                .unwrap_or_else(|e| panic!("templates/{}: {e}", dir.path().display()));
            Some(Embedded { template, dir })
        })
        .collect();
    out.sort_by(|a, b| a.template.language.cmp(&b.template.language));
    out
}

/// The template for a language or one of its aliases.
pub fn find(language: &str) -> Option<Embedded> {
    let wanted = language.trim().to_ascii_lowercase();
    let wanted = ALIASES
        .iter()
        .find(|(alias, _)| *alias == wanted)
        .map_or(wanted.as_str(), |(_, name)| name);
    all().into_iter().find(|t| t.template.language == wanted)
}

/// The languages, for messages ("use one of …").
pub fn languages() -> Vec<String> {
    all().into_iter().map(|t| t.template.language).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_embedded_with_a_sample_handler() {
        let names = languages();
        for want in ["bash", "dockerfile", "node", "python", "rust"] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        for t in all() {
            let sample = t.sample();
            assert!(
                sample
                    .iter()
                    .any(|f| f.path == Path::new(&t.template.sample)),
                "{}: sample {} not under {}/",
                t.template.language,
                t.template.sample,
                t.template.handler
            );
            assert!(
                t.files()
                    .iter()
                    .all(|f| !f.path.starts_with(&t.template.handler)),
                "{}: the template's own files exclude the handler",
                t.template.language
            );
        }
    }

    #[test]
    fn no_bytecode_or_build_output_is_embedded() {
        for t in all() {
            for f in t.files().into_iter().chain(t.sample()) {
                assert!(
                    !f.path
                        .components()
                        .any(|c| LEFTOVERS.iter().any(|l| c.as_os_str() == *l)),
                    "{}: {}",
                    t.template.language,
                    f.path.display()
                );
            }
        }
    }

    #[test]
    fn the_digest_names_content_and_arguments() {
        let a = tempfile_dir(&[("x", "1"), ("d/y", "2")]);
        let b = tempfile_dir(&[("d/y", "2"), ("x", "1")]);
        let c = tempfile_dir(&[("x", "1"), ("d/y", "3")]);
        let none = BTreeMap::new();
        let args = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let digest = |dir: &Path, args| source_digest(dir, args).unwrap();
        assert_eq!(digest(&a, &none), digest(&b, &none));
        assert_ne!(digest(&a, &none), digest(&c, &none));
        assert_ne!(digest(&a, &none), digest(&a, &args));
        assert_eq!(image_tag("Hello", &digest(&a, &none))[..11], *"faas/hello:");
        for dir in [a, b, c] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn tempfile_dir(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "faas-digest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn languages_are_found_by_the_names_other_tools_use() {
        assert_eq!(find("python3-http").unwrap().template.language, "python");
        assert_eq!(find("nodejs").unwrap().template.language, "node");
        assert_eq!(find("binary").unwrap().template.language, "bash");
        assert_eq!(find("Python").unwrap().template.language, "python");
        assert!(find("cobol").is_none());
    }

    #[test]
    fn runners_and_dockerfiles_ship_with_their_templates() {
        let python = find("python").unwrap();
        let files: Vec<_> = python.files().into_iter().map(|f| f.path).collect();
        for want in ["Dockerfile", "runner.py", "template.yml"] {
            assert!(files.contains(&PathBuf::from(want)), "{files:?}");
        }
        assert_eq!(python.template.environment["mode"], "http");
        assert_eq!(
            python.template.fprocess.as_deref(),
            Some("python3 runner.py")
        );
    }

    #[test]
    fn a_handler_folder_outside_the_template_is_refused() {
        let text = "language: x\ndescription: y\nhandler: ../etc\nsample: a\n";
        assert!(
            Template::parse(text)
                .unwrap_err()
                .contains("inside the template")
        );
        let text = "language: x\ndescription: y\nhandler: f\nsample: a\nextra: 1\n";
        assert!(Template::parse(text).unwrap_err().contains("extra"));
    }
}
