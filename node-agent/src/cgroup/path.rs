//! Recognises container cgroups by their path, as kubelet and container runtimes lay them out:
//!
//! | driver | path |
//! |---|---|
//! | systemd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope` (also `crio-<id>.scope`, `docker-<id>.scope`; guaranteed pods sit in `kubepods-pod<uid>.slice`) |
//! | cgroupfs | `/kubepods/burstable/pod<uid>/<id>` (also `crio-<id>`, `docker-<id>`) |
//! | plain docker | `/docker/<id>`, `/system.slice/docker-<id>.scope` |
//!
//! `<id>` is the runtime's 64-hex-digit container id. CRI-O's `crio-conmon-<id>.scope` is
//! the monitor process, not the container, and is not matched.

/// A container found in the cgroup tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    /// The runtime's container id (64 hex digits), as in a pod's
    /// `status.containerStatuses[].containerID` after `<runtime>://`.
    pub container_id: String,
    /// The pod's UID (with dashes) when the path is under a kubelet pod cgroup.
    pub pod_uid: Option<String>,
}

/// Parses a cgroup path relative to a hierarchy's root (`/a/b/c`); `None` when its last
/// component is not a container.
pub fn parse_container(path: &str) -> Option<ContainerRef> {
    let mut components = path.split('/').filter(|c| !c.is_empty());
    let leaf = components.next_back()?;
    let container_id = container_id(leaf)?.to_string();
    let pod_uid = components.rev().find_map(pod_uid);
    Some(ContainerRef {
        container_id,
        pod_uid,
    })
}

/// The container id in one path component.
fn container_id(leaf: &str) -> Option<&str> {
    let name = leaf.strip_suffix(".scope").unwrap_or(leaf);
    let id = ["cri-containerd-", "crio-", "docker-", "containerd-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    is_container_id(id).then_some(id)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pod UID in one path component: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(component: &str) -> Option<String> {
    let raw = if let Some(slice) = component.strip_suffix(".slice") {
        let rest = slice.strip_prefix("kubepods")?;
        let at = rest.rfind("-pod")?;
        &rest[at + 4..]
    } else {
        component.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A UUID, or the 32 hex digits kubelet gives static pods (an MD5 of the manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let dashes = s.bytes().filter(|&b| b == b'-').count();
    hex == 32 && hex + dashes == s.len() && (dashes == 0 || dashes == 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "0f3b6c2d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c";
    const UID: &str = "2b8f2c1e-7d4a-4c1b-9a3e-5f6d7e8f9a0b";

    fn r(uid: Option<&str>) -> Option<ContainerRef> {
        Some(ContainerRef {
            container_id: ID.into(),
            pod_uid: uid.map(Into::into),
        })
    }

    #[test]
    fn kubelet_systemd_driver() {
        let u = UID.replace('-', "_");
        for runtime in ["cri-containerd", "crio", "docker"] {
            let p = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/{runtime}-{ID}.scope"
            );
            assert_eq!(parse_container(&p), r(Some(UID)), "{p}");
        }
        let guaranteed = format!("/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse_container(&guaranteed), r(Some(UID)));
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_container(&besteffort), r(Some(UID)));
    }

    #[test]
    fn kubelet_cgroupfs_driver() {
        assert_eq!(
            parse_container(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            r(Some(UID))
        );
        assert_eq!(
            parse_container(&format!("/kubepods/pod{UID}/crio-{ID}")),
            r(Some(UID))
        );
        // Static pods: the UID is an MD5 hex string.
        let static_uid = "6a1e7d2f0b9c8d7e6f5a4b3c2d1e0f9a";
        assert_eq!(
            parse_container(&format!("/kubepods/besteffort/pod{static_uid}/{ID}")),
            r(Some(static_uid))
        );
    }

    #[test]
    fn plain_docker_and_nesting_under_a_prefix() {
        assert_eq!(parse_container(&format!("/docker/{ID}")), r(None));
        assert_eq!(
            parse_container(&format!("/system.slice/docker-{ID}.scope")),
            r(None)
        );
        // kind nodes and tests put kubelet's tree under a prefix.
        assert_eq!(
            parse_container(&format!("/test-1/kubepods/burstable/pod{UID}/{ID}")),
            r(Some(UID))
        );
    }

    #[test]
    fn rejects_what_is_not_a_container() {
        for p in [
            "/",
            "",
            "/kubepods.slice",
            "/kubepods/burstable",
            &format!("/kubepods/burstable/pod{UID}"),
            &format!(
                "/kubepods.slice/kubepods-pod{}.slice",
                UID.replace('-', "_")
            ),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            &format!("/docker/{}", &ID[..63]),
            &format!("/docker/{}", ID.to_uppercase()),
            "/system.slice/containerd.service",
            "/user.slice/user-0.slice/session-1.scope",
        ] {
            assert_eq!(parse_container(p), None, "{p}");
        }
        // A pod-like component with a malformed UID gives a container without a pod.
        assert_eq!(parse_container(&format!("/kubepods/podxyz/{ID}")), r(None));
    }

    proptest! {
        #[test]
        fn never_panics(path in "\\PC*") {
            let _ = parse_container(&path);
        }

        #[test]
        fn finds_ids_after_any_prefix(prefix in "(/[a-z._-]{1,12}){0,4}", id in "[0-9a-f]{64}") {
            let found = parse_container(&format!("{prefix}/cri-containerd-{id}.scope")).unwrap();
            prop_assert_eq!(found.container_id, id);
        }
    }
}
