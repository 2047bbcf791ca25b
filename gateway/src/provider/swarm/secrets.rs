//! Swarm secrets as `/system/secrets` creates them: Docker takes the value
//! base64-encoded, and we label ours `faas.secret=true`. The API lists,
//! mounts and removes only secrets with that label: the Swarm's other
//! secrets (the gateway's own credentials, other stacks' secrets) are not
//! its to hand out.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bollard::models::SecretSpec;

/// The label on secrets created through the gateway.
pub const SECRET_LABEL: &str = "faas.secret";
/// Docker's `label` filter for ours.
pub const SECRET_FILTER: &str = "faas.secret=true";

pub fn secret_spec(name: &str, value: &[u8]) -> SecretSpec {
    SecretSpec {
        name: Some(name.to_owned()),
        labels: Some(HashMap::from([(
            SECRET_LABEL.to_owned(),
            "true".to_owned(),
        )])),
        data: Some(STANDARD.encode(value)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_base64_encoded_and_labelled_as_ours() {
        let spec = secret_spec("api-key", b"s3cr3t");
        assert_eq!(spec.name.as_deref(), Some("api-key"));
        assert_eq!(spec.data.as_deref(), Some("czNjcjN0"));
        let binary = secret_spec("bin", &[0xff, 0xfe, 0x00]);
        assert_eq!(binary.data.as_deref(), Some("//4A"));
        assert_eq!(
            spec.labels
                .and_then(|l| l.get("faas.secret").cloned())
                .as_deref(),
            Some("true")
        );
    }
}
