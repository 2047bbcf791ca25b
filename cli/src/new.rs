//! `faas templates` and `faas new`: the embedded templates, and a new
//! function's folder (the template's sample handler) plus its entry in the
//! stack file, in faas-cli's format (`lang:`, `handler:`, `image:`).

use std::path::{Path, PathBuf};

use clap::Args;
use faas_common::stack::Stack;
use faas_common::templates::{self, Embedded};
use serde::Serialize;

use crate::error::{Error, Result, io_reason};
use crate::output;

#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// JSON for scripts
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The function's name (its folder's, unless --handler says otherwise)
    name: String,

    /// The template: bash, python, node, rust or dockerfile (faas templates)
    #[arg(long, visible_alias = "language")]
    lang: String,

    /// The stack file to add the function to (created when missing)
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "yaml",
        default_value = "stack.yml"
    )]
    file: PathBuf,

    /// The function's folder [default: ./NAME, beside the stack file]
    #[arg(long, value_name = "DIR")]
    handler: Option<PathBuf>,
}

#[derive(Serialize)]
struct TemplateRow {
    language: String,
    description: String,
    handler: String,
    /// The dependency file in the handler folder, if the language has one.
    dependencies: Option<String>,
}

pub fn list(args: TemplatesArgs) -> Result<()> {
    let rows: Vec<TemplateRow> = templates::all()
        .into_iter()
        .map(|t| TemplateRow {
            handler: format!("{}/{}", t.template.handler, t.template.sample),
            dependencies: t.template.dependencies,
            language: t.template.language,
            description: t.template.description,
        })
        .collect();
    if args.json {
        return output::print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| vec![r.language, r.description])
        .collect();
    output::print(&output::table(&["LANGUAGE", "DESCRIPTION"], &table))
}

/// The template for `lang`, or an error listing the ones there are.
pub fn template(lang: &str) -> Result<Embedded> {
    templates::find(lang).ok_or_else(|| {
        Error::new(format!(
            "unknown template {lang:?}: use one of {} (faas templates)",
            templates::languages().join(", ")
        ))
    })
}

/// `faas new`; a new stack file's `provider.gateway` is `--gateway` (or
/// `FAAS_GATEWAY`, or the default).
pub fn new(ctx: &crate::Context, args: NewArgs) -> Result<()> {
    crate::client::check_function_name(&args.name)?;
    let gateway = ctx.gateway(None)?;
    let embedded = template(&args.lang)?;
    let language = embedded.template.language.clone();
    let base = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let handler = args
        .handler
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let folder = base.join(&handler);
    if folder.exists() {
        return Err(Error::new(format!(
            "{} already exists: choose another name or --handler folder",
            folder.display()
        )));
    }
    let existing = if args.file.exists() {
        let stack = Stack::load(&args.file).map_err(|e| Error::new(e.to_string()))?;
        if stack.functions.contains_key(&args.name) {
            return Err(Error::new(format!(
                "{} already has a function {:?}",
                args.file.display(),
                args.name
            )));
        }
        Some(std::fs::read_to_string(&args.file).map_err(|e| {
            Error::new(format!(
                "cannot read {}: {}",
                args.file.display(),
                io_reason(&e)
            ))
        })?)
    } else {
        None
    };
    let text = stack_text(
        existing.as_deref(),
        &args.name,
        &language,
        &handler,
        &gateway,
    )
    .map_err(|why| {
        Error::new(format!(
            "cannot add {:?} to {}: {why}",
            args.name,
            args.file.display()
        ))
    })?;

    for file in embedded.sample() {
        let path = folder.join(&file.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, file.contents));
        written.map_err(|e| {
            Error::new(format!(
                "cannot write {}: {}",
                path.display(),
                io_reason(&e)
            ))
        })?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        }
    }
    std::fs::write(&args.file, text).map_err(|e| {
        Error::new(format!(
            "cannot write {}: {}",
            args.file.display(),
            io_reason(&e)
        ))
    })?;
    output::print(&format!(
        "Created {} ({language}) and added {} to {}.\nEdit {}, then run: faas up{}\n",
        folder.display(),
        args.name,
        args.file.display(),
        folder.join(&embedded.template.sample).display(),
        if args.file == Path::new("stack.yml") {
            String::new()
        } else {
            format!(" -f {}", args.file.display())
        }
    ))
}

/// The stack file with the new function: a new file, or `existing` with
/// the entry appended to its `functions:` section (which must be last, as
/// `faas new` writes it, so the rest of the file stays as written).
fn stack_text(
    existing: Option<&str>,
    name: &str,
    language: &str,
    handler: &Path,
    gateway: &str,
) -> std::result::Result<String, String> {
    let entry = format!(
        "  {name}:\n    lang: {language}\n    handler: ./{}\n    image: faas/{}:latest\n",
        handler.display(),
        name.to_ascii_lowercase()
    );
    let Some(existing) = existing else {
        return Ok(format!(
            "version: 1.0\nprovider:\n  name: faas\n  gateway: {gateway}\n\nfunctions:\n{entry}"
        ));
    };
    let last_section = existing
        .lines()
        .rfind(|l| !l.is_empty() && !l.starts_with([' ', '\t', '#', '-']));
    let mut text = existing.to_owned();
    match last_section.map(str::trim_end) {
        Some("functions:") => {}
        None => text.push_str("functions:\n"),
        Some(other) => {
            return Err(format!(
                "its last section is {other:?}, not \"functions:\"; add the function by hand"
            ));
        }
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    Stack::parse(&text).map_err(|e| e.to_string())?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stack_file_names_the_gateway_and_the_function() {
        let text =
            stack_text(None, "Hello", "python", Path::new("Hello"), "http://g:8080").unwrap();
        let stack = Stack::parse(&text).unwrap();
        assert_eq!(
            stack.provider.unwrap().gateway.as_deref(),
            Some("http://g:8080")
        );
        let f = &stack.functions["Hello"];
        assert_eq!(f.lang.as_deref(), Some("python"));
        assert_eq!(f.handler.as_deref(), Some("./Hello"));
        assert_eq!(f.image.as_deref(), Some("faas/hello:latest"));
    }

    #[test]
    fn functions_are_appended_to_an_existing_stack() {
        let first = stack_text(None, "a", "bash", Path::new("a"), "http://g").unwrap();
        let both = stack_text(Some(&first), "b", "node", Path::new("b"), "http://g").unwrap();
        let stack = Stack::parse(&both).unwrap();
        assert_eq!(stack.functions.len(), 2);
        assert!(both.starts_with(&first), "the file is kept as written");
        let odd = "functions:\n  a:\n    image: x\nconfiguration:\n  templates: []\n";
        let err = stack_text(Some(odd), "b", "node", Path::new("b"), "http://g").unwrap_err();
        assert!(err.contains("configuration"), "{err}");
    }
}
