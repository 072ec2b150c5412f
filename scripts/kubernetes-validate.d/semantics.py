"""What an API server refuses and the OpenAPI schemas cannot say (enum values, name and label
syntax, limits, references between fields), and devbox's own rules for what it writes. Reads
every YAML document of the files named as one set; prints each problem; exit 1 when any.

Run by scripts/kubernetes-validate, in its venv (PyYAML comes with kubernetes-validate)."""

import re
import sys

import yaml

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
MAX_INDEXED = 100_000
NAMESPACED = {"PersistentVolumeClaim", "ConfigMap", "Service", "Job"}

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def is_subdomain(name):
    return isinstance(name, str) and len(name) <= 253 and all(
        DNS_LABEL.match(part) and len(part) <= 63 for part in name.split(".")
    )


def is_label(value, limit=63):
    return isinstance(value, str) and len(value) <= limit and LABEL_VALUE.match(value)


def is_label_key(key):
    prefix, _, name = key.rpartition("/")
    return (prefix == "" and "/" not in key or is_subdomain(prefix)) and name and is_label(name)


def check_labels(where, labels, what="label"):
    for key, value in (labels or {}).items():
        if not is_label_key(key):
            problem(where, f"{what} key {key!r} is not a qualified name")
        if what == "label" and not is_label(value):
            problem(where, f"label {key}={value!r}: not a label value (63 letters, digits, -_.)")
        if what == "annotation" and not isinstance(value, str):
            problem(where, f"annotation {key}: its value must be a string, not {value!r}")


def check_pod(where, spec, indexed):
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        problem(where, f"restartPolicy {spec.get('restartPolicy')!r}: a Job's pods take Never or OnFailure")
    volumes = spec.get("volumes", [])
    names = [v.get("name") for v in volumes]
    for name in names:
        if not (isinstance(name, str) and DNS_LABEL.match(name) and len(name) <= 63):
            problem(where, f"volume name {name!r} is not a DNS label")
    if len(set(names)) != len(names):
        problem(where, f"volume names repeat: {names}")
    for volume in volumes:
        empty = volume.get("emptyDir")
        if empty is not None:
            if empty.get("medium", "") not in ("", "Memory"):
                problem(where, f"emptyDir medium {empty.get('medium')!r} is not '' or Memory")
            if "sizeLimit" in empty and not QUANTITY.match(str(empty["sizeLimit"])):
                problem(where, f"sizeLimit {empty['sizeLimit']!r} is not a quantity")
        secret = volume.get("secret")
        if secret is not None:
            if not is_subdomain(secret.get("secretName")):
                problem(where, f"secretName {secret.get('secretName')!r} is not a DNS subdomain")
            if not 0 <= secret.get("defaultMode", 0o644) <= 0o777:
                problem(where, f"defaultMode {secret.get('defaultMode')} is no file mode")
    for key, value in (spec.get("nodeSelector") or {}).items():
        if not (is_label_key(key) and is_label(value)):
            problem(where, f"nodeSelector {key}={value!r} is not a label")
    containers = spec.get("containers", [])
    if not containers:
        problem(where, "a pod needs a container")
    for container in containers:
        cwhere = f"{where} container {container.get('name')}"
        if not (isinstance(container.get("name"), str) and DNS_LABEL.match(container["name"])):
            problem(cwhere, "its name is not a DNS label")
        for mount in container.get("volumeMounts", []):
            if mount.get("name") not in names:
                problem(cwhere, f"mounts volume {mount.get('name')!r}, which the pod lacks")
            if not str(mount.get("mountPath", "")).startswith("/"):
                problem(cwhere, f"mountPath {mount.get('mountPath')!r} is not absolute")
            sub = mount.get("subPath", "")
            if sub.startswith("/") or ".." in sub.split("/"):
                problem(cwhere, f"subPath {sub!r} must be relative, without '..'")
        env = container.get("env", [])
        env_names = [e.get("name") for e in env]
        if len(set(env_names)) != len(env_names):
            problem(cwhere, f"environment names repeat: {env_names}")
        for entry in env:
            if not (isinstance(entry.get("name"), str) and ENV_NAME.match(entry["name"])):
                problem(cwhere, f"environment name {entry.get('name')!r} is not one Kubernetes 1.29 takes")
            if "value" in entry and "valueFrom" in entry:
                problem(cwhere, f"{entry['name']} has both value and valueFrom")
            if "value" in entry and not isinstance(entry["value"], str):
                problem(cwhere, f"{entry['name']}'s value must be a string, not {entry['value']!r}")
            source = entry.get("valueFrom", {})
            field = source.get("fieldRef", {}).get("fieldPath")
            if field == COMPLETION_INDEX and not indexed:
                problem(cwhere, f"{entry['name']} reads the completion index, which only an Indexed Job's pods have")
            key_ref = source.get("secretKeyRef")
            if key_ref is not None and not (is_subdomain(key_ref.get("name")) and key_ref.get("key")):
                problem(cwhere, f"{entry['name']}: secretKeyRef needs a Secret's name and a key")
        for key in (container.get("resources", {}).get("limits") or {}):
            if not is_label_key(key):
                problem(cwhere, f"resource {key!r} is not a qualified name")


def check_job(where, job):
    spec = job.get("spec", {})
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        problem(where, f"completionMode {mode!r} is not NonIndexed or Indexed")
    indexed = mode == "Indexed"
    completions = spec.get("completions", 1)
    parallelism = spec.get("parallelism", 1)
    for name, value in (("completions", completions), ("parallelism", parallelism)):
        if not isinstance(value, int) or value < 1:
            problem(where, f"{name} {value!r} must be a whole number above 0")
    if isinstance(parallelism, int) and isinstance(completions, int) and parallelism > completions:
        problem(where, f"parallelism {parallelism} is more than its {completions} completions")
    if indexed and isinstance(completions, int) and completions > MAX_INDEXED:
        problem(where, f"an Indexed Job holds at most {MAX_INDEXED} completions, not {completions}")
    if "backoffLimitPerIndex" in spec:
        if not indexed:
            problem(where, "backoffLimitPerIndex needs completionMode Indexed")
        if spec.get("template", {}).get("spec", {}).get("restartPolicy") != "Never":
            problem(where, "backoffLimitPerIndex needs restartPolicy Never")
    if "ttlSecondsAfterFinished" in spec:
        problem(where, "devbox keeps finished Jobs for their logs: no ttlSecondsAfterFinished")
    if "selector" in spec or "manualSelector" in spec:
        problem(where, "devbox lets Kubernetes make a Job's selector")
    name = job["metadata"]["name"]
    if indexed and isinstance(completions, int) and len(f"{name}-{completions - 1}") > 63:
        problem(where, f"its pods' hostnames ({name}-INDEX) would be longer than 63 characters")
    template = spec.get("template", {})
    job_labels = job["metadata"].get("labels", {})
    pod_labels = template.get("metadata", {}).get("labels", {})
    check_labels(where + " pod template", pod_labels)
    if any(pod_labels.get(k) != v for k, v in job_labels.items()):
        problem(where, "its pods lack some of its labels: `kubectl … -l` would find the Job, not its pods")
    check_pod(where + " pod", template.get("spec", {}), indexed)


def main(paths):
    documents = []
    for path in paths:
        with open(path) as file:
            for number, document in enumerate(yaml.safe_load_all(file)):
                if document is not None:
                    documents.append((f"{path} document {number}", document))
    namespaces = {d["metadata"]["name"] for _, d in documents if d.get("kind") == "Namespace"}
    jobs = [d for _, d in documents if d.get("kind") == "Job"]
    for where, document in documents:
        kind, metadata = document.get("kind"), document.get("metadata", {})
        name = metadata.get("name")
        where = f"{where} ({kind} {name})"
        if not document.get("apiVersion") or not kind or not name:
            problem(where, "needs apiVersion, kind and metadata.name")
            continue
        if kind in ("Namespace", "Job") and not (DNS_LABEL.match(name) and len(name) <= 63):
            problem(where, "its name is not a DNS label")
        if kind == "Service" and not (DNS_1035.match(name) and len(name) <= 63):
            problem(where, "a Service's name starts with a letter and is a DNS label")
        if kind in ("ConfigMap", "PersistentVolumeClaim") and not is_subdomain(name):
            problem(where, "its name is not a DNS subdomain")
        if kind in NAMESPACED:
            namespace = metadata.get("namespace")
            if not namespace or (namespaces and namespace not in namespaces):
                problem(where, f"namespace {namespace!r} is not the Namespace of the set {sorted(namespaces)}")
        labels = metadata.get("labels", {})
        check_labels(where, labels)
        check_labels(where, metadata.get("annotations"), "annotation")
        if labels.get("io.devbox.managed") != "true":
            problem(where, "every object devbox writes carries io.devbox.managed=true")
        if kind == "Job":
            check_job(where, document)
        if kind == "PersistentVolumeClaim":
            for mode in document.get("spec", {}).get("accessModes", []):
                if mode not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
                    problem(where, f"access mode {mode!r} is not one Kubernetes knows")
            if any(k in labels for k in ("io.devbox.run", "io.devbox.sweep")):
                problem(where, "the project's claim must not carry a run's or sweep's label: deleting those would delete it")
        if kind == "Service":
            spec = document.get("spec", {})
            selector = spec.get("selector") or {}
            if spec.get("clusterIP") != "None":
                problem(where, "devbox's Services are headless (clusterIP None)")
            if not any(
                all(j["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
                for j in jobs
            ):
                problem(where, f"its selector {selector} finds no Job's pods in the set")
    for line in problems:
        print(f"semantics: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
