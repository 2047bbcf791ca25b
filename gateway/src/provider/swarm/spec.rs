//! A deployment in Docker's terms: what `POST`/`PUT /system/functions`
//! asks for, as a Swarm service spec. Pure: the provider looks up what
//! takes Docker (secret ids, the functions network's id, the current spec)
//! and hands it in, so the whole mapping is unit-tested here.
//!
//! A new function gets a full spec ([`Plan::service_spec`]); an update
//! overwrites only what a deployment decides ([`Plan::apply`]) and keeps
//! the rest of the live spec: its name, replica count, endpoint, health
//! check, and a stack's `com.docker.*` labels (so `docker stack rm` still
//! finds it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use faas_common::api::{Deployment, Resources};
use faas_common::parse::{parse_bytes, parse_cpus};

use crate::provider::{ProviderError, min_replicas};

/// The label that makes a service a function, valued with its name.
pub const FUNCTION_LABEL: &str = "faas.function";
/// Annotations live on the service as labels under this prefix.
pub const ANNOTATION_PREFIX: &str = "faas.annotation.";
/// Labels Docker itself (a stack) put on a service: an update keeps them.
const DOCKER_LABEL_PREFIX: &str = "com.docker.";
/// Where a read-only function still writes: the watchdog's `/tmp/.lock`.
const TMP: &str = "/tmp";
const TMP_MODE: i64 = 0o1777;
/// Secrets appear as root-owned, world-readable files under `/run/secrets`.
const SECRET_MODE: u32 = 0o444;
/// Longer than the watchdog's drain (its `healthcheck_interval`, 10s by
/// default, plus in-flight calls), so Swarm does not kill a draining task.
const STOP_GRACE: Duration = Duration::from_secs(30);
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// Docker refuses to start a container with less (and Swarm would retry
/// forever): refuse it up front.
const MIN_MEMORY: u64 = 6 << 20;

/// A deployment, checked: everything that can be wrong without asking
/// Docker has been found wrong here.
#[derive(Debug, Clone)]
pub struct Plan {
    deployment: Deployment,
    resources: Option<TaskSpecResources>,
    replicas: u64,
    /// `faas.deployed-by`: which gateway deployed it.
    owner: String,
}

impl Plan {
    /// Checks the name, the image, the resources and `faas.scale.min`.
    pub fn new(deployment: Deployment) -> Result<Plan, ProviderError> {
        if !faas_common::is_valid_function_name(&deployment.service) {
            return Err(ProviderError::Invalid(format!(
                "invalid function name {:?}: use letters, digits, '_', '.' and '-'",
                deployment.service
            )));
        }
        if deployment.image.trim().is_empty() {
            return Err(ProviderError::Invalid(format!(
                "missing image for function {:?}",
                deployment.service
            )));
        }
        let resources = resources(deployment.limits.as_ref(), deployment.requests.as_ref())?;
        let replicas = min_replicas(&deployment.labels)?;
        Ok(Plan {
            deployment,
            resources,
            replicas,
            owner: crate::provider::DEPLOYED_BY_GATEWAY.to_owned(),
        })
    }

    /// Labels the service as deployed by `owner` (the gateway's service).
    pub fn owned_by(mut self, owner: &str) -> Plan {
        self.owner = owner.to_owned();
        self
    }

    pub fn name(&self) -> &str {
        &self.deployment.service
    }

    pub fn image(&self) -> &str {
        self.deployment.image.trim()
    }

    /// The secrets to mount, each once.
    pub fn secrets(&self) -> BTreeSet<&str> {
        self.deployment.secrets.iter().map(String::as_str).collect()
    }

    /// A new service's spec. `secret_ids` maps each of [`Plan::secrets`]
    /// to its Docker id.
    pub fn service_spec(
        &self,
        network: &str,
        secret_ids: &BTreeMap<String, String>,
    ) -> ServiceSpec {
        let mut spec = ServiceSpec {
            name: Some(self.deployment.service.clone()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::try_from(self.replicas).unwrap_or(i64::MAX)),
                }),
                ..Default::default()
            }),
            // Task addresses, not a virtual IP: this kernel has no IPVS, and
            // the gateway balances across tasks itself.
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: None,
            }),
            ..Default::default()
        };
        self.apply(&mut spec, &[network.to_owned()], secret_ids);
        spec
    }

    /// Overwrites in `spec` what the deployment decides: labels, image,
    /// environment, secrets, read-only root and `/tmp`, resources,
    /// constraints, restart and rolling-update policies, and attachment to
    /// the functions network (`network_ids`: its name and id). Keeps the
    /// rest.
    pub fn apply(
        &self,
        spec: &mut ServiceSpec,
        network_ids: &[String],
        secret_ids: &BTreeMap<String, String>,
    ) {
        let d = &self.deployment;
        spec.labels = Some(self.labels(spec.labels.take().unwrap_or_default()));

        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        let container = task
            .container_spec
            .get_or_insert_with(TaskSpecContainerSpec::default);
        container.image = Some(self.image().to_owned());
        container.env = Some(env(d));
        container.secrets = secret_mounts(&self.secrets(), secret_ids);
        container.read_only = Some(d.read_only_root_filesystem);
        container.mounts = mounts(container.mounts.take(), d.read_only_root_filesystem);
        container.stop_grace_period = Some(nanos(STOP_GRACE));

        task.resources = self.resources.clone();
        task.restart_policy = Some(TaskSpecRestartPolicy {
            // `any`, not `on-failure`: a watchdog that exits cleanly is a
            // lost replica all the same.
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            delay: Some(nanos(RESTART_DELAY)),
            max_attempts: None,
            window: None,
        });
        let placement = task
            .placement
            .get_or_insert_with(TaskSpecPlacement::default);
        placement.constraints = (!d.constraints.is_empty()).then(|| d.constraints.clone());
        attach(task, spec.networks.as_deref(), network_ids);

        // Start-first: a new task runs (and passes its health check) before
        // an old one stops, and the gateway keeps calling the old ones
        // until then, so an update drops no call.
        spec.update_config = Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            ..Default::default()
        });
        spec.rollback_config = Some(ServiceSpecRollbackConfig {
            parallelism: Some(1),
            delay: Some(0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
            ..Default::default()
        });
    }

    /// The service's labels: Docker's own kept from `current`, then the
    /// user's, the annotations, `faas.function` and `faas.deployed-by`
    /// (which no user label overrides).
    fn labels(&self, current: HashMap<String, String>) -> HashMap<String, String> {
        let d = &self.deployment;
        let mut labels: HashMap<String, String> = current
            .into_iter()
            .filter(|(k, _)| k.starts_with(DOCKER_LABEL_PREFIX))
            .collect();
        labels.extend(d.labels.clone());
        labels.extend(
            d.annotations
                .iter()
                .map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), v.clone())),
        );
        labels.insert(FUNCTION_LABEL.to_owned(), d.service.clone());
        labels.insert(
            crate::provider::DEPLOYED_BY_LABEL.to_owned(),
            self.owner.clone(),
        );
        labels
    }
}

/// A service's labels split into the user's labels and the annotations
/// stored among them.
pub fn split_annotations(
    labels: impl IntoIterator<Item = (String, String)>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut plain = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    for (k, v) in labels {
        match k.strip_prefix(ANNOTATION_PREFIX) {
            Some(key) if !key.is_empty() => {
                annotations.insert(key.to_owned(), v);
            }
            _ => {
                plain.insert(k, v);
            }
        }
    }
    (plain, annotations)
}

/// `fprocess` (when given; it wins over an `fprocess` in `envVars`), then
/// `envVars`, as `K=V`.
fn env(d: &Deployment) -> Vec<String> {
    let process = d
        .env_process
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    process
        .map(|p| format!("fprocess={p}"))
        .into_iter()
        .chain(
            d.env_vars
                .iter()
                .filter(|(k, _)| !(process.is_some() && k.as_str() == "fprocess"))
                .map(|(k, v)| format!("{k}={v}")),
        )
        .collect()
}

fn secret_mounts(
    names: &BTreeSet<&str>,
    ids: &BTreeMap<String, String>,
) -> Option<Vec<TaskSpecContainerSpecSecrets>> {
    let mounts: Vec<_> = names
        .iter()
        .filter_map(|name| {
            Some(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some((*name).to_owned()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(SECRET_MODE),
                }),
                secret_id: Some(ids.get(*name)?.clone()),
                secret_name: Some((*name).to_owned()),
            })
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

/// The mounts a service had, but for our `/tmp` tmpfs, which comes back
/// only with a read-only root.
fn mounts(current: Option<Vec<Mount>>, read_only: bool) -> Option<Vec<Mount>> {
    let mut mounts: Vec<Mount> = current
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !(m.typ == Some(MountType::TMPFS) && m.target.as_deref() == Some(TMP)))
        .collect();
    if read_only {
        mounts.push(Mount {
            target: Some(TMP.to_owned()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(MountTmpfsOptions {
                mode: Some(TMP_MODE),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    (!mounts.is_empty()).then_some(mounts)
}

/// Adds the functions network to the task's networks unless the task (or
/// the service, in the older top-level field) already joins it.
fn attach(
    task: &mut TaskSpec,
    service_networks: Option<&[NetworkAttachmentConfig]>,
    ids: &[String],
) {
    let joined = task
        .networks
        .iter()
        .flatten()
        .chain(service_networks.into_iter().flatten())
        .any(|n| n.target.as_ref().is_some_and(|t| ids.contains(t)));
    if joined {
        return;
    }
    if let Some(network) = ids.first() {
        task.networks
            .get_or_insert_with(Vec::new)
            .push(NetworkAttachmentConfig {
                target: Some(network.clone()),
                ..Default::default()
            });
    }
}

/// `limits` and `requests` as Swarm limits and reservations; `None` when
/// neither says anything.
fn resources(
    limits: Option<&Resources>,
    requests: Option<&Resources>,
) -> Result<Option<TaskSpecResources>, ProviderError> {
    let (limit_memory, limit_cpus) = amounts("limits", limits)?;
    let (request_memory, request_cpus) = amounts("requests", requests)?;
    let limits = (limit_memory.is_some() || limit_cpus.is_some()).then_some(Limit {
        memory_bytes: limit_memory,
        nano_cpus: limit_cpus,
        pids: None,
    });
    let reservations =
        (request_memory.is_some() || request_cpus.is_some()).then_some(ResourceObject {
            memory_bytes: request_memory,
            nano_cpus: request_cpus,
            generic_resources: None,
        });
    Ok(
        (limits.is_some() || reservations.is_some()).then(|| TaskSpecResources {
            limits,
            reservations,
            ..Default::default()
        }),
    )
}

/// A service's limits and reservations as `limits` and `requests` again
/// (memory in whole MiB where it is a whole number of them, CPUs as a
/// decimal count).
pub fn resources_back(r: Option<&TaskSpecResources>) -> (Option<Resources>, Option<Resources>) {
    fn back(memory: Option<i64>, nano_cpus: Option<i64>) -> Option<Resources> {
        let memory = memory.filter(|&m| m > 0).map(|m| {
            if m % (1 << 20) == 0 {
                format!("{}m", m >> 20)
            } else {
                m.to_string()
            }
        });
        let cpu = nano_cpus
            .filter(|&n| n > 0)
            .map(|n| format!("{}", n as f64 / 1e9));
        (memory.is_some() || cpu.is_some()).then_some(Resources { memory, cpu })
    }
    let Some(r) = r else {
        return (None, None);
    };
    (
        r.limits
            .as_ref()
            .and_then(|l| back(l.memory_bytes, l.nano_cpus)),
        r.reservations
            .as_ref()
            .and_then(|l| back(l.memory_bytes, l.nano_cpus)),
    )
}

/// One of `limits`/`requests`: memory in bytes and CPUs in billionths.
fn amounts(
    field: &str,
    resources: Option<&Resources>,
) -> Result<(Option<i64>, Option<i64>), ProviderError> {
    let Some(r) = resources else {
        return Ok((None, None));
    };
    fn value(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let invalid = |what: &str, v: &str, why: String| {
        ProviderError::Invalid(format!("{field}.{what} {v:?}: {why}"))
    };
    let memory = value(&r.memory)
        .map(|v| {
            let bytes = parse_bytes(v).map_err(|e| invalid("memory", v, e))?;
            if bytes < MIN_MEMORY {
                return Err(invalid("memory", v, "Docker needs at least 6m".to_owned()));
            }
            i64::try_from(bytes).map_err(|_| invalid("memory", v, "too large".to_owned()))
        })
        .transpose()?;
    let cpus = value(&r.cpu)
        .map(|v| {
            let nanos = parse_cpus(v).map_err(|e| invalid("cpu", v, e))?;
            i64::try_from(nanos).map_err(|_| invalid("cpu", v, "too large".to_owned()))
        })
        .transpose()?;
    Ok((memory, cpus))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            service: "catservice".into(),
            image: "faas/catservice:latest".into(),
            ..Default::default()
        }
    }

    fn plan(d: Deployment) -> Plan {
        Plan::new(d).expect("valid deployment")
    }

    fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
        spec.task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .expect("container spec")
    }

    fn task(spec: &ServiceSpec) -> &TaskSpec {
        spec.task_template.as_ref().expect("task template")
    }

    #[test]
    fn a_minimal_deployment_is_one_dnsrr_replica_on_the_functions_network() {
        let spec = plan(deployment()).service_spec("functions", &BTreeMap::new());
        assert_eq!(spec.name.as_deref(), Some("catservice"));
        assert_eq!(
            spec.mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas),
            Some(1)
        );
        assert_eq!(
            spec.endpoint_spec.as_ref().and_then(|e| e.mode),
            Some(EndpointSpecModeEnum::DNSRR)
        );
        let networks = task(&spec).networks.clone().unwrap_or_default();
        assert_eq!(networks.len(), 1);
        assert_eq!(networks[0].target.as_deref(), Some("functions"));
        let c = container(&spec);
        // As given: no digest, no registry.
        assert_eq!(c.image.as_deref(), Some("faas/catservice:latest"));
        assert_eq!(c.env.as_deref(), Some(&[][..]));
        assert_eq!(c.read_only, Some(false));
        assert_eq!(c.mounts, None);
        assert_eq!(c.secrets, None);
        // The image's own health check.
        assert_eq!(c.health_check, None);
        assert_eq!(c.stop_grace_period, Some(30_000_000_000));
        assert_eq!(task(&spec).resources, None);
        assert_eq!(
            spec.labels,
            Some(HashMap::from([
                ("faas.function".into(), "catservice".into()),
                ("faas.deployed-by".into(), "gateway".into())
            ]))
        );
    }

    #[test]
    fn rolling_updates_start_first_and_roll_back_on_failure() {
        let spec = plan(deployment()).service_spec("functions", &BTreeMap::new());
        let update = spec.update_config.clone().expect("update config");
        assert_eq!(update.parallelism, Some(1));
        assert_eq!(
            update.order,
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(
            update.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        let rollback = spec.rollback_config.clone().expect("rollback config");
        assert_eq!(
            rollback.order,
            Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST)
        );
        let restart = task(&spec).restart_policy.clone().expect("restart policy");
        assert_eq!(
            restart.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ANY)
        );
        assert_eq!(restart.delay, Some(1_000_000_000));
    }

    #[test]
    fn labels_annotations_env_and_constraints_are_mapped() {
        let d = Deployment {
            env_process: Some("cat".into()),
            env_vars: BTreeMap::from([
                ("write_debug".into(), "true".into()),
                ("fprocess".into(), "ignored".into()),
            ]),
            labels: BTreeMap::from([
                ("faas.scale.min".into(), "2".into()),
                ("faas.function".into(), "not-this".into()),
            ]),
            annotations: BTreeMap::from([("topic".into(), "demo".into())]),
            constraints: vec!["node.role == manager".into()],
            ..deployment()
        };
        let spec = plan(d).service_spec("functions", &BTreeMap::new());
        let labels = spec.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("faas.function").map(String::as_str),
            Some("catservice")
        );
        assert_eq!(labels.get("faas.scale.min").map(String::as_str), Some("2"));
        assert_eq!(
            labels.get("faas.annotation.topic").map(String::as_str),
            Some("demo")
        );
        assert_eq!(
            container(&spec).env,
            Some(vec!["fprocess=cat".into(), "write_debug=true".into()])
        );
        assert_eq!(
            spec.mode
                .clone()
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas),
            Some(2),
            "faas.scale.min replicas"
        );
        assert_eq!(
            task(&spec)
                .placement
                .as_ref()
                .and_then(|p| p.constraints.clone()),
            Some(vec!["node.role == manager".into()])
        );
    }

    #[test]
    fn secrets_are_mounted_read_only_under_their_names() {
        let d = Deployment {
            secrets: vec!["api-key".into(), "db".into(), "api-key".into()],
            ..deployment()
        };
        let ids = BTreeMap::from([
            ("api-key".to_owned(), "id1".to_owned()),
            ("db".to_owned(), "id2".to_owned()),
        ]);
        let spec = plan(d).service_spec("functions", &ids);
        let secrets = container(&spec).secrets.clone().expect("secrets");
        assert_eq!(secrets.len(), 2, "each secret once");
        assert_eq!(secrets[0].secret_id.as_deref(), Some("id1"));
        assert_eq!(secrets[0].secret_name.as_deref(), Some("api-key"));
        let file = secrets[0].file.clone().expect("file");
        assert_eq!(file.name.as_deref(), Some("api-key"));
        assert_eq!(file.uid.as_deref(), Some("0"));
        assert_eq!(file.gid.as_deref(), Some("0"));
        assert_eq!(file.mode, Some(0o444));
        assert_eq!(secrets[1].secret_id.as_deref(), Some("id2"));
    }

    #[test]
    fn a_read_only_root_gets_a_writable_tmp() {
        let d = Deployment {
            read_only_root_filesystem: true,
            ..deployment()
        };
        let spec = plan(d).service_spec("functions", &BTreeMap::new());
        let c = container(&spec);
        assert_eq!(c.read_only, Some(true));
        let mounts = c.mounts.clone().expect("mounts");
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::TMPFS));
        assert_eq!(mounts[0].target.as_deref(), Some("/tmp"));
        assert_eq!(
            mounts[0].tmpfs_options.as_ref().and_then(|o| o.mode),
            Some(0o1777)
        );
    }

    #[test]
    fn limits_and_requests_become_limits_and_reservations() {
        let d = Deployment {
            limits: Some(Resources {
                memory: Some("128m".into()),
                cpu: Some("0.5".into()),
            }),
            requests: Some(Resources {
                memory: Some("64Mi".into()),
                cpu: Some("100m".into()),
            }),
            ..deployment()
        };
        let spec = plan(d).service_spec("functions", &BTreeMap::new());
        let resources = task(&spec).resources.clone().expect("resources");
        let (back_limits, back_requests) = resources_back(Some(&resources));
        let limits = resources.limits.expect("limits");
        assert_eq!(limits.memory_bytes, Some(128 << 20));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        let back_limits = back_limits.expect("limits read back");
        assert_eq!(back_limits.memory.as_deref(), Some("128m"));
        assert_eq!(back_limits.cpu.as_deref(), Some("0.5"));
        assert!(back_requests.is_some());
        let reservations = resources.reservations.expect("reservations");
        assert_eq!(reservations.memory_bytes, Some(64 << 20));
        assert_eq!(reservations.nano_cpus, Some(100_000_000));
    }

    #[test]
    fn bad_deployments_are_refused_naming_the_field() {
        let cases: Vec<(Deployment, &str)> = vec![
            (
                Deployment {
                    service: "a b".into(),
                    ..deployment()
                },
                "invalid function name \"a b\"",
            ),
            (
                Deployment {
                    image: " ".into(),
                    ..deployment()
                },
                "missing image",
            ),
            (
                Deployment {
                    limits: Some(Resources {
                        memory: Some("lots".into()),
                        cpu: None,
                    }),
                    ..deployment()
                },
                "limits.memory \"lots\": expected a size",
            ),
            (
                Deployment {
                    limits: Some(Resources {
                        memory: Some("1m".into()),
                        cpu: None,
                    }),
                    ..deployment()
                },
                "limits.memory \"1m\": Docker needs at least 6m",
            ),
            (
                Deployment {
                    requests: Some(Resources {
                        memory: None,
                        cpu: Some("half".into()),
                    }),
                    ..deployment()
                },
                "requests.cpu \"half\": expected a number of CPUs",
            ),
            (
                Deployment {
                    labels: BTreeMap::from([("faas.scale.min".into(), "x".into())]),
                    ..deployment()
                },
                "faas.scale.min",
            ),
        ];
        for (d, expected) in cases {
            match Plan::new(d.clone()) {
                Err(ProviderError::Invalid(message)) => {
                    assert!(message.contains(expected), "{message:?} lacks {expected:?}")
                }
                other => panic!("{d:?}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_update_keeps_what_the_deployment_does_not_decide() {
        let original = Deployment {
            env_vars: BTreeMap::from([("A".into(), "1".into())]),
            labels: BTreeMap::from([("old".into(), "label".into())]),
            read_only_root_filesystem: true,
            ..deployment()
        };
        let mut live = plan(original).service_spec("functions", &BTreeMap::new());
        // What Docker and a stack add to a live spec.
        live.name = Some("faas_catservice".into());
        live.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(3) }),
            ..Default::default()
        });
        live.labels
            .get_or_insert_with(HashMap::new)
            .insert("com.docker.stack.namespace".into(), "faas".into());
        let task = live.task_template.as_mut().expect("task");
        task.networks = Some(vec![NetworkAttachmentConfig {
            target: Some("netid123".into()),
            aliases: Some(vec!["catservice".into()]),
            ..Default::default()
        }]);
        let container = task.container_spec.as_mut().expect("container");
        container.mounts.get_or_insert_with(Vec::new).push(Mount {
            target: Some("/data".into()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        });
        container.command = Some(vec!["/fwatchdog".into()]);

        let update = Deployment {
            image: "faas/env:latest".into(),
            env_vars: BTreeMap::from([("B".into(), "2".into())]),
            ..deployment()
        };
        plan(update).apply(
            &mut live,
            &["functions".to_owned(), "netid123".to_owned()],
            &BTreeMap::new(),
        );

        assert_eq!(live.name.as_deref(), Some("faas_catservice"));
        assert_eq!(
            live.mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas),
            Some(3)
        );
        let labels = live.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("com.docker.stack.namespace").map(String::as_str),
            Some("faas")
        );
        assert_eq!(labels.get("old"), None, "labels are replaced");
        let task = live.task_template.as_ref().expect("task");
        assert_eq!(
            task.networks.as_ref().map(Vec::len),
            Some(1),
            "already attached"
        );
        let c = task.container_spec.as_ref().expect("container");
        assert_eq!(c.image.as_deref(), Some("faas/env:latest"));
        assert_eq!(c.env, Some(vec!["B=2".into()]));
        assert_eq!(c.command, Some(vec!["/fwatchdog".into()]));
        assert_eq!(c.read_only, Some(false));
        let mounts = c.mounts.clone().unwrap_or_default();
        assert_eq!(
            mounts.len(),
            1,
            "the /tmp tmpfs went with the read-only root"
        );
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
    }

    #[test]
    fn an_update_attaches_an_unattached_service_to_the_functions_network() {
        let mut live = ServiceSpec {
            name: Some("catservice".into()),
            ..Default::default()
        };
        plan(deployment()).apply(
            &mut live,
            &["functions".to_owned(), "netid123".to_owned()],
            &BTreeMap::new(),
        );
        let networks = task(&live).networks.clone().unwrap_or_default();
        assert_eq!(networks.len(), 1);
        assert_eq!(networks[0].target.as_deref(), Some("functions"));
    }

    #[test]
    fn annotations_are_split_from_labels() {
        let (labels, annotations) = split_annotations([
            ("faas.function".to_owned(), "x".to_owned()),
            ("faas.annotation.topic".to_owned(), "demo".to_owned()),
            ("faas.annotation.".to_owned(), "odd".to_owned()),
        ]);
        assert_eq!(
            annotations,
            BTreeMap::from([("topic".to_owned(), "demo".to_owned())])
        );
        assert_eq!(labels.get("faas.function").map(String::as_str), Some("x"));
        assert_eq!(
            labels.get("faas.annotation.").map(String::as_str),
            Some("odd")
        );
        assert!(!labels.contains_key("faas.annotation.topic"));
    }
}
