//! Deployment JSON as `POST /system/functions` reads it, then the checks
//! every provider relies on: a clear refusal or a deployment, never a panic.
#![no_main]

use faas_common::api::Deployment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(deployment) = serde_json::from_slice::<Deployment>(data) {
        if gateway::system::check_deployment(&deployment, 100).is_ok() {
            assert!(faas_common::is_valid_function_name(&deployment.service));
            assert!(gateway::provider::reserved_label(deployment.labels.keys()).is_none());
        }
    }
});
