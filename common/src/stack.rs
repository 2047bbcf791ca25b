//! The stack file, in faas-cli's `stack.yml` format: where the gateway is,
//! and for each function its image, command, environment, labels and
//! resources. The gateway's process provider runs it; the CLI deploys it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

/// A whole stack file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub version: Option<String>,
    #[serde(default)]
    pub provider: Option<ProviderSection>,
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
    /// faas-cli's `configuration` block (templates, copies): accepted, unused.
    #[serde(default)]
    pub configuration: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
}

/// One function of the stack.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    #[serde(default)]
    pub lang: Option<String>,
    /// The folder of the function's code, relative to the stack file.
    #[serde(default)]
    pub handler: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// The command the watchdog runs; the image's own when absent.
    #[serde(default)]
    pub fprocess: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Option<Resources>,
    #[serde(default)]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub readonly_root_filesystem: bool,
    /// Arguments for the build (a Dockerfile's ARGs; the host build
    /// steps' environment).
    #[serde(default, deserialize_with = "scalar_map")]
    pub build_args: BTreeMap<String, String>,
    /// faas-cli's build options: accepted, unused.
    #[serde(default)]
    pub build_options: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub skip_build: Option<bool>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl FunctionSpec {
    /// This stack function, named `name`, as the gateway's deployment JSON.
    pub fn deployment(&self, name: &str) -> crate::api::Deployment {
        let resources = |r: &Resources| crate::api::Resources {
            memory: r.memory.clone(),
            cpu: r.cpu.clone(),
        };
        crate::api::Deployment {
            service: name.to_string(),
            image: self.image.clone().unwrap_or_default(),
            env_process: self.fprocess.clone(),
            env_vars: self.environment.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            constraints: self.constraints.clone(),
            secrets: self.secrets.clone(),
            limits: self.limits.as_ref().map(resources),
            requests: self.requests.as_ref().map(resources),
            read_only_root_filesystem: self.readonly_root_filesystem,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub cpu: Option<String>,
}

/// Why a stack file was refused; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not a valid stack file: {1}")]
    Parse(String, String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl Stack {
    pub fn load(path: &Path) -> Result<Stack, StackError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| StackError::Read(shown.clone(), e))?;
        Stack::parse(&text).map_err(|e| match e {
            StackError::Parse(_, why) => StackError::Parse(shown.clone(), why),
            StackError::Invalid(_, why) => StackError::Invalid(shown.clone(), why),
            other => other,
        })
    }

    /// Parses and validates a stack file's text, after putting in the
    /// environment's values for `${VAR}` and `${VAR:-default}` (like
    /// faas-cli; an unset variable without a default is empty).
    pub fn parse(text: &str) -> Result<Stack, StackError> {
        let text = substitute(text, |name| std::env::var(name).ok())
            .map_err(|e| StackError::Invalid("stack file".into(), e))?;
        let stack: Stack = serde_saphyr::from_str(&text)
            .map_err(|e| StackError::Parse("stack file".into(), e.to_string()))?;
        for name in stack.functions.keys() {
            if !crate::is_valid_function_name(name) {
                return Err(StackError::Invalid(
                    "stack file".into(),
                    format!(
                        "functions.{name}: invalid function name (use letters, digits, '_', '.' and '-')"
                    ),
                ));
            }
        }
        Ok(stack)
    }
}

/// `${VAR}` and `${VAR:-default}` replaced by `lookup`'s value (`:-`: the
/// default when unset or empty). `$$` is a literal `$`; any other `$` is
/// left alone.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = inner.find('}') else {
            return Err(format!(
                "unclosed ${{ in {:?}",
                inner.lines().next().unwrap_or_default()
            ));
        };
        let expression = &inner[..end];
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(format!(
                "${{{expression}}}: {name:?} is not a variable name"
            ));
        }
        match (
            lookup(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {}
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A YAML scalar of any kind, kept as the text a person wrote.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

pub(crate) fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Scalar>> = Option::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_string()))
        .collect())
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::into_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  catservice:
    lang: dockerfile
    handler: ./catservice
    image: faas/catservice:latest
    fprocess: cat
  sleep:
    image: faas/sleep:latest
    fprocess: sh handler.sh
    environment:
      exec_timeout: 60
      write_debug: true
    labels:
      faas.scale.min: 2
    limits:
      memory: 128m
      cpu: 0.5
    constraints:
      - node.role == manager
    secrets: [api-key]
"#;

    #[test]
    fn reads_faas_cli_stack_files() {
        let stack = Stack::parse(SAMPLE).unwrap();
        assert!(stack.version.is_some());
        assert_eq!(
            stack.provider.unwrap().gateway.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let cat = &stack.functions["catservice"];
        assert_eq!(cat.fprocess.as_deref(), Some("cat"));
        assert_eq!(cat.handler.as_deref(), Some("./catservice"));
        let sleep = &stack.functions["sleep"];
        assert_eq!(sleep.environment["exec_timeout"], "60");
        assert_eq!(sleep.environment["write_debug"], "true");
        assert_eq!(sleep.labels["faas.scale.min"], "2");
        let limits = sleep.limits.as_ref().unwrap();
        assert_eq!(limits.memory.as_deref(), Some("128m"));
        assert_eq!(limits.cpu.as_deref(), Some("0.5"));
        assert_eq!(sleep.constraints, vec!["node.role == manager"]);
        assert_eq!(sleep.secrets, vec!["api-key"]);
    }

    #[test]
    fn variables_are_substituted_like_faas_cli() {
        let env = |name: &str| match name {
            "TAG" => Some("v2".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("image: faas/x:${TAG}", "image: faas/x:v2"),
            ("image: faas/x:${TAG:-latest}", "image: faas/x:v2"),
            ("image: faas/x:${NOPE:-latest}", "image: faas/x:latest"),
            ("image: faas/x:${EMPTY:-latest}", "image: faas/x:latest"),
            ("a: ${NOPE}b", "a: b"),
            ("price: $5 and $$HOME", "price: $5 and $HOME"),
        ];
        for (text, want) in cases {
            assert_eq!(substitute(text, env).unwrap(), want, "{text}");
        }
        assert!(
            substitute("a: ${TAG", env)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            substitute("a: ${1x}", env)
                .unwrap_err()
                .contains("not a variable name")
        );
        let stack = Stack::parse(
            "functions:\n  a:\n    image: faas/a:${FAAS_TEST_UNSET_VAR:-dev}\n    build_args:\n      PY: 3\n",
        )
        .unwrap();
        assert_eq!(stack.functions["a"].image.as_deref(), Some("faas/a:dev"));
        assert_eq!(stack.functions["a"].build_args["PY"], "3");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = Stack::parse("functions:\n  a:\n    imagee: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("imagee"), "{err}");
    }

    #[test]
    fn invalid_function_names_are_refused() {
        let err = Stack::parse("functions:\n  \"bad name\":\n    image: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad name") && err.contains("invalid function name"),
            "{err}"
        );
    }
}
