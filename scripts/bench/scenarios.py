"""The benchmark scenarios of issue 14. Each returns rows for the report (see report.py).

Every scenario runs its own objects in namespaces of its own; against `sigil dev` each repetition
gets a fresh, empty API server so that no run measures another's objects."""

import base64
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid

from support import Cluster, Controller, CountingProxy, Moto, run_quiet, summary, timed, wait_for

WORKERS = 8


def b64(text):
    return base64.b64encode(text.encode()).decode()


def bulk_create(kube, objects):
    """Creates the objects over WORKERS connections; returns the seconds it took."""
    def create(obj):
        kube.create(obj)
    took, _ = timed(lambda: list(concurrent.futures.ThreadPoolExecutor(WORKERS).map(create, objects)))
    return took


def count_in(kube, kind, namespaces):
    return sum(kube.count(kind, ns) for ns in namespaces)


class Bench:
    """What every scenario needs: tools, sizes, where to work, which cluster."""

    def __init__(self, tools, sizes, workdir, runs, kubeconfig, log):
        self.tools, self.sizes, self.workdir, self.runs = tools, sizes, workdir, runs
        self.kubeconfig, self.log = kubeconfig, log
        self.tag = uuid.uuid4().hex[:6]
        self.memory_runs = runs
        self.moto = None

    def cluster(self, name):
        return Cluster(self.tools, self.workdir, self.kubeconfig, name)

    def controller(self, cluster, name, extra=()):
        return Controller(self.tools, cluster, self.workdir, extra, name)

    def shared_moto(self):
        if self.moto is None:
            self.moto = Moto(self.tools, self.workdir)
            self.proxy = CountingProxy(self.moto.port)
        return self.moto, self.proxy

    def ns(self, name):
        return f"{name}-{self.tag}"

    def stop(self):
        if self.moto is not None:
            self.proxy.stop()
            self.moto.process.stop()


# --- sealed secrets: cold start, memory at scale, the emulator's own speed -------------------------

def recipients(kube):
    cm = wait_for("the sigil-recipients ConfigMap", 60,
                  lambda: kube.get_or_none("ConfigMap", Controller.NAMESPACE, "sigil-recipients"))
    return [line for line in cm["data"]["recipients"].splitlines() if line.startswith("age1")]


def sealed_specs(bench, recipient, count):
    """`count` distinct SealedSecret specs of one value each, sealed cluster-wide by `sigil seal`."""
    specs = []
    for i in range(count):
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cold", "namespace": "default"},
                  "data": {"value": b64(f"cold-start-value-{i}")}}
        out = run_quiet([bench.tools.sigil, "seal", "--scope", "cluster", "-r", recipient, "-o", "json"],
                        input=json.dumps(secret).encode())
        specs.append(json.loads(out.stdout)["spec"])
    return specs


def store_objects(namespace, endpoint):
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-credentials", "namespace": namespace},
         "stringData": {"access-key-id": "testing", "secret-access-key": "testing"}},
        {"apiVersion": "sigil.dev/v1alpha1", "kind": "SecretStore",
         "metadata": {"name": "aws", "namespace": namespace},
         "spec": {"provider": {"aws": {
             "service": "SecretsManager", "region": "us-east-1", "endpoint": endpoint,
             "auth": {"secretRef": {
                 "accessKeyIDSecretRef": {"name": "aws-credentials", "key": "access-key-id"},
                 "secretAccessKeySecretRef": {"name": "aws-credentials", "key": "secret-access-key"}}}}}}},
    ]


def external_secret(namespace, name, remote, interval):
    return {"apiVersion": "sigil.dev/v1alpha1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"refreshInterval": interval, "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
                     "data": [{"secretKey": "value", "remoteRef": {"key": remote}}]}}


def seed_backend(moto, names, value_of):
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda name: moto.put(name, value_of(name)), names))


def cold_start(bench):
    n, spread = bench.sizes["sealed"], 10
    n_es, n_other = bench.sizes["memory_external"], bench.sizes["memory_unrelated"]
    cold, peak, writes, lists, memory, unrelated_delta, final_hwm = [], [], [], [], [], [], []
    for run in range(bench.runs):
        bench.log(f"cold start: run {run + 1}/{bench.runs} ({n} SealedSecrets)")
        cluster = bench.cluster(f"dev-cold-{run}")
        kube = cluster.kube
        try:
            first = bench.controller(cluster, f"controller-keys-{run}")
            recipient = recipients(kube)[0]
            first.stop()
            specs = sealed_specs(bench, recipient, 4)
            namespaces = [bench.ns(f"cold{run}-{k}") for k in range(spread)]
            for ns in namespaces:
                kube.namespace(ns)
            objects = [{"apiVersion": "sigil.dev/v1alpha1", "kind": "SealedSecret",
                        "metadata": {"name": f"sealed-{i:05}", "namespace": namespaces[i % spread]},
                        "spec": specs[i % len(specs)]} for i in range(n)]
            writes.append(n / bulk_create(kube, objects))
            took = [timed(lambda: kube.request("GET", "/apis/sigil.dev/v1alpha1/sealedsecrets", raw=True))[0]
                    for _ in range(5)]
            lists.append(sorted(took)[2])

            start = time.monotonic()
            controller = bench.controller(cluster, f"controller-cold-{run}")
            wait_for("the controller to open every SealedSecret", 600,
                     lambda: controller.metric("sigil_reconciles_total", controller="sealedsecret") >= n,
                     every=0.05)
            done = time.monotonic()
            present = wait_for("every Secret", 120, lambda: count_in(kube, "Secret", namespaces) >= n or None,
                               every=0.5)
            if count_in(kube, "Secret", namespaces) < n:
                raise RuntimeError("not every Secret was written")
            if time.monotonic() - done > 1.0:
                done = time.monotonic()
            cold.append(done - start)
            hwm, _ = controller.memory_mib()
            peak.append(hwm)
            del present

            if n_es and run < bench.memory_runs:
                rss_es, delta, hwm_end = memory_at_scale(bench, kube, controller, run, n_es, n_other)
                memory.append(rss_es)
                unrelated_delta.append(delta)
                final_hwm.append(hwm_end)
            controller.stop()
        finally:
            cluster.stop()
    rows = [
        {"scenario": "cold start", "measure": f"{n:,} SealedSecrets → all Secrets present (controller started)",
         "values": cold, "unit": "s", "goal": 10.0, "goal_text": "≤ 10 s"},
        {"scenario": "cold start", "measure": "controller peak RSS (VmHWM) during the cold start",
         "values": peak, "unit": "MiB", "goal": 64.0, "goal_text": "≤ 64 MiB"},
        {"scenario": "emulator", "measure": f"`sigil dev` creates/s ({n:,} SealedSecrets, {WORKERS} connections)",
         "values": writes, "unit": "/s", "goal": None, "goal_text": "report", "higher": True},
        {"scenario": "emulator", "measure": f"`sigil dev` list latency of {n:,} SealedSecrets (all namespaces)",
         "values": lists, "unit": "s", "goal": None, "goal_text": "report"},
    ]
    if n_es:
        rows += [
            {"scenario": "memory at scale",
             "measure": f"controller RSS with {n:,} SealedSecrets + {n_es:,} ExternalSecrets + "
                        f"{n_other:,} unrelated Secrets + {n_other:,} ConfigMaps (VmRSS; peak in notes)",
             "values": memory, "unit": "MiB", "goal": 96.0, "goal_text": "≤ 96 MiB",
             "notes": "peak (VmHWM) " + ", ".join(f"{v:.1f}" for v in final_hwm) + " MiB"},
            {"scenario": "memory at scale",
             "measure": f"RSS growth from the {2 * n_other:,} unrelated objects",
             "values": unrelated_delta, "unit": "MiB", "goal": None, "goal_text": "flat (≈ 0)"},
        ]
    return rows


def memory_at_scale(bench, kube, controller, run, n_es, n_other, spread=10, distinct=100):
    moto, _ = bench.shared_moto()
    names = [f"bench/memory/{i:03}" for i in range(distinct)]
    seed_backend(moto, names, lambda name: f"value-of-{name}")
    es_namespaces = [bench.ns(f"mem{run}-{k}") for k in range(spread)]
    objects = []
    for ns in es_namespaces:
        kube.namespace(ns)
        objects += store_objects(ns, moto.endpoint)
    bulk_create(kube, objects)
    bulk_create(kube, [external_secret(es_namespaces[i % spread], f"external-{i:05}", names[i % distinct], "1h")
                       for i in range(n_es)])
    bench.log(f"memory at scale: waiting for {n_es} ExternalSecrets")
    wait_for("every ExternalSecret's Secret", 900,
             lambda: count_in(kube, "Secret", es_namespaces) >= n_es + spread, every=1.0)
    time.sleep(2)
    _, before = controller.memory_mib()
    other = [bench.ns(f"other{run}-{k}") for k in range(spread)]
    for ns in other:
        kube.namespace(ns)
    unrelated = []
    for i in range(n_other):
        ns = other[i % spread]
        unrelated.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"other-{i:05}", "namespace": ns},
                          "data": {"value": b64("x" * 64)}})
        unrelated.append({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": f"other-{i:05}", "namespace": ns}, "data": {"value": "x" * 64}})
    bench.log(f"memory at scale: {len(unrelated)} unrelated objects")
    bulk_create(kube, unrelated)
    time.sleep(3)
    hwm, after = controller.memory_mib()
    return after, after - before, hwm


# --- external secrets: refresh round, ESO-style baseline, rotation ---------------------------------

def external(bench):
    n, distinct, interval = bench.sizes["external"], bench.sizes["distinct"], bench.sizes["interval"]
    moto, proxy = bench.shared_moto()
    names = [f"bench/round/{i:03}" for i in range(distinct)]
    modes = {"sigil": [], "eso": []}
    for run in range(bench.runs):
        for mode in (("sigil", "eso") if run % 2 == 0 else ("eso", "sigil")):
            bench.log(f"refresh round: run {run + 1}/{bench.runs}, {mode}")
            modes[mode].append(refresh_run(bench, moto, proxy, names, n, interval, run, mode))
    rows = []
    for mode, label in (("sigil", "sigil"), ("eso", "ESO-style (`--per-object-reads`)")):
        runs = modes[mode]
        rows.append({"scenario": "refresh round" if mode == "sigil" else "ESO-style baseline",
                     "measure": f"{label}: backend calls per refresh round, {n:,} ExternalSecrets over "
                                f"{distinct} AWS secrets (counted at a proxy in front of moto)",
                     "values": [r["calls"] for r in runs], "unit": "calls", "goal": 5 if mode == "sigil" else None,
                     "goal_text": "≤ 5" if mode == "sigil" else "report the ratio", "integer": True})
        rows.append({"scenario": "refresh round" if mode == "sigil" else "ESO-style baseline",
                     "measure": f"{label}: refresh round, first backend call → every Secret holds the new value",
                     "values": [r["round"] for r in runs], "unit": "s", "goal": 2.0 if mode == "sigil" else None,
                     "goal_text": "≤ 2 s" if mode == "sigil" else "report the ratio"})
        rows.append({"scenario": "refresh round" if mode == "sigil" else "ESO-style baseline",
                     "measure": f"{label}: first sync of the {n:,} (created → every Secret present); backend calls",
                     "values": [r["first"] for r in runs], "unit": "s", "goal": None, "goal_text": "report",
                     "notes": "calls: " + ", ".join(str(r["first_calls"]) for r in runs)})
    s_calls = summary([r["calls"] for r in modes["sigil"]])[0]
    e_calls = summary([r["calls"] for r in modes["eso"]])[0]
    s_round = summary([r["round"] for r in modes["sigil"]])[0]
    e_round = summary([r["round"] for r in modes["eso"]])[0]
    rows[3]["ratio"] = f"ESO-style makes {e_calls / max(s_calls, 1):.0f}× the calls of sigil"
    rows[4]["ratio"] = f"ESO-style round takes {e_round / max(s_round, 1e-9):.1f}× sigil's"
    rows.append({"scenario": "rotation",
                 "measure": f"value changed in the backend → Secret updated (slowest of {n:,}; "
                            f"refreshInterval {interval}s)",
                 "values": [r["rotation"] for r in modes["sigil"]], "unit": "s", "goal": interval + 1.0,
                 "goal_text": f"≤ refreshInterval + 1 s = {interval + 1} s"})
    return rows


def refresh_run(bench, moto, proxy, names, n, interval, run, mode):
    ns = bench.ns(f"ext{run}-{mode}")
    cluster = bench.cluster(f"dev-ext-{run}-{mode}")
    kube = cluster.kube
    extra = ["--store-requests-per-second", "1000"]
    if mode == "eso":
        extra.append("--per-object-reads")
    controller = bench.controller(cluster, f"controller-ext-{run}-{mode}", extra)
    try:
        kube.namespace(ns)
        first_value = f"{run}-{mode}-first"
        seed_backend(moto, names, lambda name: f"{name}={first_value}")
        bulk_create(kube, store_objects(ns, proxy.endpoint))
        objects = [external_secret(ns, f"external-{i:04}", names[i % len(names)], f"{interval}s") for i in range(n)]
        start = time.monotonic()
        bulk_create(kube, objects)
        expect = {f"external-{i:04}": b64(f"{names[i % len(names)]}={first_value}") for i in range(n)}
        wait_secrets(kube, ns, expect, 600)
        first = time.monotonic() - start
        first_calls = len(proxy.since(start))
        time.sleep(interval / 2)

        second_value = f"{run}-{mode}-rotated"
        seed_backend(moto, names, lambda name: f"{name}={second_value}")
        changed = time.monotonic()
        expect = {f"external-{i:04}": b64(f"{names[i % len(names)]}={second_value}") for i in range(n)}
        wait_secrets(kube, ns, expect, 10 * interval + 120)
        done = time.monotonic()
        calls = proxy.since(changed)
        if not calls:
            raise RuntimeError("no backend call after the rotation")
        first_call = calls[0][0]
        time.sleep(max(0.0, changed + interval - time.monotonic()))
        return {"calls": len(proxy.since(changed, changed + interval)), "round": done - first_call,
                "rotation": done - changed, "first": first, "first_calls": first_calls}
    finally:
        controller.stop()
        cluster.stop()


def wait_secrets(kube, ns, expect, within):
    def all_there():
        seen = {s["metadata"]["name"]: (s.get("data") or {}).get("value") for s in kube.list("Secret", ns)}
        return all(seen.get(name) == value for name, value in expect.items())
    wait_for(f"{len(expect)} Secrets with their values in {ns}", within, all_there, every=0.1)


# --- manifest sync: apply vs kubectl, no-op resync, drift, webhook ---------------------------------

def git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@sigil.dev",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@sigil.dev")
    return run_quiet([bench_git(), "-C", repo, *args], env=env).stdout.decode().strip()


_GIT = ["git"]


def bench_git():
    return _GIT[0]


def manifests(count):
    """ConfigMaps, Services and Deployments, a third each, as YAML files by name."""
    files = {}
    for i in range(count):
        kind = ("ConfigMap", "Service", "Deployment")[i % 3]
        name = f"app-{i:04}"
        if kind == "ConfigMap":
            text = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: bench}}\n"
                    f"data:\n  index: \"{i}\"\n  payload: \"{'x' * 64}\"\n")
        elif kind == "Service":
            text = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{app: bench}}\n"
                    f"spec:\n  selector: {{app: {name}}}\n  ports:\n    - name: http\n      port: 80\n"
                    f"      targetPort: 8080\n")
        else:
            text = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: bench}}\n"
                    f"spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
                    f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n"
                    f"        - name: app\n          image: registry.example/app:{i}\n"
                    f"          ports:\n            - containerPort: 8080\n")
        files[f"{kind.lower()}-{name}.yaml"] = text
    return files


def versions(kube, ns):
    out = {}
    for kind in ("ConfigMap", "Service", "Deployment"):
        for obj in kube.list(kind, ns):
            out[(kind, obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
    return out


def sync_status(kube, ns):
    return (kube.get("Sync", ns, "bench").get("status") or {})


def ready(status):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def sync(bench):
    _GIT[0] = bench.tools.git
    n = bench.sizes["sync"]
    cluster = bench.cluster("dev-sync")
    kube = cluster.kube
    controller = bench.controller(cluster, "controller-sync")
    results = {k: [] for k in ("sigil", "kubectl", "noop", "noop_writes", "drift", "webhook")}
    try:
        for run in range(bench.runs):
            bench.log(f"sync: run {run + 1}/{bench.runs} ({n} manifests)")
            repo = os.path.join(bench.workdir, f"repo-{run}")
            shutil.rmtree(repo, ignore_errors=True)
            os.makedirs(os.path.join(repo, "apps"))
            files = manifests(n)
            for name, text in files.items():
                with open(os.path.join(repo, "apps", name), "w") as out:
                    out.write(text)
            git(repo, "init", "-q", "-b", "main")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"{n} manifests")
            commit = git(repo, "rev-parse", "HEAD")

            def kubectl_apply():
                ns = bench.ns(f"kubectl{run}")
                kube.namespace(ns)
                took, _ = timed(lambda: run_quiet([bench.tools.kubectl, "--kubeconfig", cluster.kubeconfig,
                                                   "apply", "--server-side", "-n", ns, "-f",
                                                   os.path.join(repo, "apps")]))
                results["kubectl"].append(took)

            def sigil_apply():
                results["sigil"].append(sigil_sync(bench, kube, repo, commit, run))

            for step in ((sigil_apply, kubectl_apply) if run % 2 == 0 else (kubectl_apply, sigil_apply)):
                step()
            ns = bench.ns(f"sigil{run}")
            noop, writes = noop_resync(kube, ns, run)
            results["noop"].append(noop)
            results["noop_writes"].append(writes)
            results["drift"].append(drift(kube, ns))
            results["webhook"].append(webhook(bench, kube, controller, repo, ns, run))
    finally:
        controller.stop()
        cluster.stop()
    s, k = summary(results["sigil"])[0], summary(results["kubectl"])[0]
    return [
        {"scenario": "sync apply", "measure": f"{n:,} manifests (ConfigMaps, Services, Deployments) from Git "
                                              "→ Sync Ready at the commit",
         "values": results["sigil"], "unit": "s", "goal": None, "goal_text": "≥ 2× faster than kubectl",
         "ratio": f"kubectl apply --server-side -f DIR: {fmt(k, 's')} → sigil is {k / s:.2f}× faster",
         "ratio_goal": (k / s) >= 2.0},
        {"scenario": "sync apply", "measure": f"`kubectl apply --server-side -f DIR` of the same {n:,} (side by side)",
         "values": results["kubectl"], "unit": "s", "goal": None, "goal_text": "(baseline)"},
        {"scenario": "no-op resync", "measure": f"the same {n:,} unchanged: requested resync → handled",
         "values": results["noop"], "unit": "s", "goal": 1.0, "goal_text": "≤ 1 s; 0 writes, 0 renders",
         "notes": "writes seen by the server (resourceVersions moved): "
                  + ", ".join(str(w) for w in results["noop_writes"]) + "; renders: 0 (a plain folder)",
         "extra_check": all(w == 0 for w in results["noop_writes"])},
        {"scenario": "drift", "measure": "hand edit of an applied ConfigMap → reverted (selfHeal)",
         "values": results["drift"], "unit": "s", "goal": 1.0, "goal_text": "≤ 1 s"},
        {"scenario": "webhook", "measure": "commit + push webhook → the changed object applied",
         "values": results["webhook"], "unit": "s", "goal": 2.0, "goal_text": "≤ 2 s"},
    ]


def sigil_sync(bench, kube, repo, commit, run):
    ns = bench.ns(f"sigil{run}")
    kube.namespace(ns)
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook", "namespace": ns},
                 "stringData": {"token": "bench-webhook-token"}})
    source = {"apiVersion": "sigil.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "bench", "namespace": ns},
              "spec": {"url": f"file://{repo}", "ref": {"branch": "main"}, "interval": "1h",
                       "webhookSecretRef": {"name": "hook"}}}
    sync_obj = {"apiVersion": "sigil.dev/v1alpha1", "kind": "Sync", "metadata": {"name": "bench", "namespace": ns},
                "spec": {"sourceRef": {"name": "bench"}, "path": "apps", "interval": "1h", "prune": True,
                         "selfHeal": True, "targetNamespace": ns}}
    revision = f"main@sha1:{commit}"
    start = time.monotonic()
    kube.create(source)
    kube.create(sync_obj)
    wait_for("the Sync to apply the commit", 600,
             lambda: (lambda st: st.get("lastAppliedRevision") == revision and ready(st))(sync_status(kube, ns)),
             every=0.02)
    return time.monotonic() - start


def noop_resync(kube, ns, run):
    before = versions(kube, ns)
    token = f"resync-{run}-{time.time()}"
    start = time.monotonic()
    kube.merge_patch("Sync", ns, "bench", {"metadata": {"annotations": {"sigil.dev/reconcile-requested-at": token}}})
    wait_for("the resync", 120, lambda: sync_status(kube, ns).get("lastHandledReconcileAt") == token, every=0.02)
    took = time.monotonic() - start
    after = versions(kube, ns)
    return took, sum(1 for key, rv in after.items() if before.get(key) != rv)


def drift(kube, ns):
    name = "app-0000"
    original = kube.get("ConfigMap", ns, name)["data"]["index"]
    start = time.monotonic()
    kube.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}?fieldManager=hand-edit",
                 {"data": {"index": "edited by hand"}}, "application/merge-patch+json")
    wait_for("the hand edit to be reverted", 120,
             lambda: kube.get("ConfigMap", ns, name)["data"]["index"] == original, every=0.01)
    return time.monotonic() - start


def webhook(bench, kube, controller, repo, ns, run):
    import urllib.request
    name = "app-0003"
    file = os.path.join(repo, "apps", f"configmap-{name}.yaml")
    value = f"webhook-{run}-{int(time.time())}"
    with open(file) as f:
        text = f.read()
    text = text.replace('index: "3"', f'index: "{value}"')
    start = time.monotonic()
    with open(file, "w") as f:
        f.write(text)
    git(repo, "commit", "-q", "-am", "change one object")
    request = urllib.request.Request(f"{controller.url}/hooks/{ns}/bench", data=b"{}", method="POST",
                                     headers={"X-Gitlab-Token": "bench-webhook-token",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status >= 300:
            raise RuntimeError(f"webhook answered {response.status}")
    wait_for("the webhook's commit to be applied", 120,
             lambda: kube.get("ConfigMap", ns, name)["data"]["index"] == value, every=0.01)
    return time.monotonic() - start


# --- command line: sealing vs the age CLI ----------------------------------------------------------

def fresh_identity(bench, work):
    """A new age identity file in `work` (by the real age-keygen): (path, recipient)."""
    identity = os.path.join(work, "identity.txt")
    if os.path.exists(identity):
        os.remove(identity)
    run_quiet([bench.tools.age_keygen, "-o", identity])
    return identity, run_quiet([bench.tools.age_keygen, "-y", identity]).stdout.decode().strip()


def side_by_side(runs, ours, theirs):
    """Both commands once to warm up, then `runs` times each, interleaved: (our times, our
    median, their median)."""
    ours()
    theirs()
    our_times, their_times = [], []
    for _ in range(runs):
        our_times.append(timed(ours)[0])
        their_times.append(timed(theirs)[0])
    return our_times, summary(our_times)[0], summary(their_times)[0]


def cli_seal(bench):
    keys, runs = bench.sizes["seal_keys"], max(bench.runs, 5 if bench.runs >= 3 else bench.runs)
    work = os.path.join(bench.workdir, "seal")
    os.makedirs(work, exist_ok=True)
    identity, recipient = fresh_identity(bench, work)
    values = {f"key-{i:03}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(keys)}
    secret_file = os.path.join(work, "secret.json")
    with open(secret_file, "w") as out:
        json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "many", "namespace": "default"},
                   "data": {k: b64(v) for k, v in values.items()}}, out)
    value_files = []
    for key, value in values.items():
        path = os.path.join(work, key)
        with open(path, "w") as out:
            out.write(value)
        value_files.append(path)

    def sigil():
        run_quiet([bench.tools.sigil, "seal", "-r", recipient, "-f", secret_file])

    def age():
        for path in value_files:
            run_quiet([bench.tools.age, "-r", recipient, "-a", "-o", os.devnull, path])

    s_times, s, a = side_by_side(runs, sigil, age)
    return [
        {"scenario": "CLI", "measure": f"`sigil seal` of a {keys}-key Secret (one process)",
         "values": s_times, "unit": "s", "goal": None, "goal_text": "≤ 1.2× age",
         "ratio": f"age CLI, {keys} encryptions (one `age -r -a` each): {fmt(a, 's')} → sigil/age = {s / a:.2f}×",
         "ratio_goal": s / a <= 1.2},
    ]


def not_measured(scenario, measure, goal_text, reason):
    return {"scenario": scenario, "measure": measure, "values": [], "unit": "", "goal": None,
            "goal_text": goal_text, "not_measured": reason}


def fmt(value, unit):
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "calls":
        return f"{value:,.0f}"
    return f"{value:.3g} {unit}"


def subprocess_ok(argv):
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- what bench.py runs --------------------------------------------------------------------------

ROWS_OF = {
    "cold": [("cold start", "10,000 SealedSecrets → all Secrets present", "≤ 10 s"),
             ("memory at scale", "controller RSS at scale", "≤ 96 MiB"),
             ("emulator", "`sigil dev` writes/s and list latency", "report")],
    "external": [("refresh round", "1,000 ExternalSecrets over 100 AWS secrets", "≤ 5 calls; ≤ 2 s"),
                 ("ESO-style baseline", "the same with `--per-object-reads`", "report the ratio"),
                 ("rotation", "value changed in the backend → Secret updated", "≤ refreshInterval + 1 s")],
    "sync": [("sync apply", "1,000 manifests from Git vs kubectl apply --server-side", "≥ 2× faster"),
             ("no-op resync", "the same 1,000 unchanged", "0 writes, 0 renders; ≤ 1 s"),
             ("drift", "hand edit → reverted", "≤ 1 s"), ("webhook", "commit + webhook → applied", "≤ 2 s")],
    "render": [("render", "Kustomize overlay and Helm chart of 1,000 objects", "≤ 1.5× kubectl kustomize/helm template | kubectl apply")],
    "cli": [("CLI", "`sigil seal` of a 100-key Secret vs 100 `age` encryptions", "≤ 1.2×")],
    "sops": [("SOPS", "sigil opening a 100-key SOPS file vs `sops -d`", "≤ 1×")],
}


def failed_rows(name, reason):
    return [not_measured(scenario, measure, goal, f"the scenario failed: {reason}")
            for scenario, measure, goal in ROWS_OF[name]]


scenario_cold = cold_start
scenario_external = external
scenario_sync = sync
scenario_cli = cli_seal


def scenario_render(bench):
    """A Kustomize overlay and a Helm chart of `render` objects: a Sync of each against the real tools
    piped to `kubectl apply --server-side`, side by side. A sigil that does not render them yet (its
    Sync does not become Ready with every object) is reported as not measured, with the Sync's word."""
    _GIT[0] = bench.tools.git
    n = bench.sizes["render"]
    repo = os.path.join(bench.workdir, "render-repo")
    shutil.rmtree(repo, ignore_errors=True)
    write_render_repo(repo, n)
    commit = git(repo, "rev-parse", "HEAD")
    cluster = bench.cluster("dev-render")
    kube = cluster.kube
    controller = bench.controller(cluster, "controller-render")
    kinds = {"kustomize": ("overlays/prod", [bench.tools.kubectl, "kustomize", os.path.join(repo, "overlays/prod")],
                           "`kubectl kustomize DIR | kubectl apply --server-side -f -`"),
             "helm": ("chart", [bench.tools.helm, "template", "bench", os.path.join(repo, "chart")],
                      "`helm template NAME DIR | kubectl apply --server-side -f -`")}
    rows = []
    try:
        for kind, (folder, render, baseline) in kinds.items():
            sigil_times, tool_times, unsupported = [], [], None
            for run in range(bench.runs):
                bench.log(f"render: {kind} run {run + 1}/{bench.runs}")
                ns = bench.ns(f"render-{kind}{run}")
                kube.namespace(ns)
                try:
                    sigil_times.append(render_sync(bench, kube, repo, folder, commit, ns, n))
                except Unsupported as why:
                    unsupported = str(why)
                    break
                tool_ns = bench.ns(f"render-{kind}-tool{run}")
                kube.namespace(tool_ns)
                tool_times.append(timed(lambda: pipe_apply(bench, cluster, render, tool_ns))[0])
            measure = f"{'Kustomize overlay' if kind == 'kustomize' else 'Helm chart'} of {n:,} objects: " \
                      "Sync render + apply → Ready"
            goal = "≤ 1.5× " + ("kubectl kustomize" if kind == "kustomize" else "helm template") + " | kubectl apply"
            if unsupported:
                rows.append(not_measured("render", measure, goal, unsupported))
                continue
            s, t = summary(sigil_times)[0], summary(tool_times)[0]
            rows.append({"scenario": "render", "measure": measure, "values": sigil_times, "unit": "s",
                         "goal": None, "goal_text": goal,
                         "ratio": f"{baseline}: {fmt(t, 's')} → sigil/baseline = {s / t:.2f}×",
                         "ratio_goal": s / t <= 1.5})
    finally:
        controller.stop()
        cluster.stop()
    return rows


class Unsupported(Exception):
    pass


def write_render_repo(repo, n):
    os.makedirs(os.path.join(repo, "base"))
    names = []
    for name, text in manifests(n).items():
        names.append(name)
        with open(os.path.join(repo, "base", name), "w") as out:
            out.write(text)
    with open(os.path.join(repo, "base", "kustomization.yaml"), "w") as out:
        out.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
                  + "".join(f"  - {name}\n" for name in names))
    os.makedirs(os.path.join(repo, "overlays", "prod"))
    with open(os.path.join(repo, "overlays", "prod", "kustomization.yaml"), "w") as out:
        out.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n"
                  "namePrefix: prod-\nlabels:\n  - pairs: {env: prod}\n")
    os.makedirs(os.path.join(repo, "chart", "templates"))
    with open(os.path.join(repo, "chart", "Chart.yaml"), "w") as out:
        out.write("apiVersion: v2\nname: bench\nversion: 0.1.0\n")
    with open(os.path.join(repo, "chart", "values.yaml"), "w") as out:
        out.write(f"count: {n}\nimage: registry.example/app\n")
    with open(os.path.join(repo, "chart", "templates", "objects.yaml"), "w") as out:
        out.write(HELM_TEMPLATE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "render inputs")


HELM_TEMPLATE = """{{- range $i := until (int .Values.count) }}
{{- $name := printf "app-%04d" $i }}
{{- if eq (mod $i 3) 0 }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  labels: {app: bench, release: {{ $.Release.Name }}}
data:
  index: {{ $i | quote }}
  payload: {{ repeat 64 "x" | quote }}
{{- else if eq (mod $i 3) 1 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels: {app: bench, release: {{ $.Release.Name }}}
spec:
  selector: {app: {{ $name }}}
  ports:
    - name: http
      port: 80
      targetPort: 8080
{{- else }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels: {app: bench, release: {{ $.Release.Name }}}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ $name }}}
  template:
    metadata:
      labels: {app: {{ $name }}}
    spec:
      containers:
        - name: app
          image: "{{ $.Values.image }}:{{ $i }}"
          ports:
            - containerPort: 8080
{{- end }}
{{- end }}
"""


def render_sync(bench, kube, repo, folder, commit, ns, n):
    kube.create({"apiVersion": "sigil.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "bench", "namespace": ns},
                 "spec": {"url": f"file://{repo}", "ref": {"branch": "main"}, "interval": "1h"}})
    revision = f"main@sha1:{commit}"
    start = time.monotonic()
    kube.create({"apiVersion": "sigil.dev/v1alpha1", "kind": "Sync", "metadata": {"name": "bench", "namespace": ns},
                 "spec": {"sourceRef": {"name": "bench"}, "path": folder, "interval": "1h", "prune": True,
                          "targetNamespace": ns}})
    deadline = start + 300
    while time.monotonic() < deadline:
        status = sync_status(kube, ns)
        if status.get("lastAppliedRevision") == revision and ready(status):
            took = time.monotonic() - start
            applied = len(status.get("inventory") or [])
            if applied != n:
                raise Unsupported(f"this sigil's Sync of `{folder}` applied {applied} objects, not the {n} "
                                  "the render makes: it does not render this folder")
            return took
        failed = [c for c in status.get("conditions") or [] if c.get("type") == "Ready" and c.get("status") == "False"
                  and c.get("reason") not in ("Progressing", "Reconciling")]
        if failed and time.monotonic() - start > 5:
            raise Unsupported(f"this sigil's Sync of `{folder}` fails: {failed[0].get('message', '')[:160]}")
        time.sleep(0.02)
    raise Unsupported(f"this sigil's Sync of `{folder}` was not Ready within 300 s")


def pipe_apply(bench, cluster, render, ns):
    rendered = run_quiet(render).stdout
    run_quiet([bench.tools.kubectl, "--kubeconfig", cluster.kubeconfig, "apply", "--server-side", "-n", ns, "-f", "-"],
              input=rendered)


def scenario_sops(bench):
    """A Secret of `seal_keys` keys encrypted by the real `sops` to an age recipient, opened by
    `sigil unseal` (in-process, MAC verified) and by `sops -d`, one process each, side by side."""
    keys, runs = bench.sizes["sops_keys"], max(bench.runs, 5 if bench.runs >= 3 else bench.runs)
    work = os.path.join(bench.workdir, "sops")
    os.makedirs(work, exist_ok=True)
    identity, recipient = fresh_identity(bench, work)
    plain = os.path.join(work, "secret.yaml")
    with open(plain, "w") as out:
        json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "many", "namespace": "default"},
                   "stringData": {f"key-{i:03}": hashlib.sha256(str(i).encode()).hexdigest()
                                  for i in range(keys)}}, out)
    encrypted = os.path.join(work, "secret.sops.yaml")
    sops = bench.tools.sops
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    with open(encrypted, "wb") as out:
        out.write(subprocess.run([sops, "encrypt", "--age", recipient, "--input-type", "yaml",
                                  "--output-type", "yaml", plain], capture_output=True, check=True,
                                 env=env).stdout)
    decrypt_env = dict(env, SOPS_AGE_KEY_FILE=identity)

    def sigil():
        run_quiet([bench.tools.sigil, "unseal", "-i", identity, "-f", encrypted])

    def sops_d():
        subprocess.run([sops, "-d", encrypted], capture_output=True, check=True, env=decrypt_env)

    s_times, s, o = side_by_side(runs, sigil, sops_d)
    return [
        {"scenario": "SOPS", "measure": f"`sigil unseal` of a {keys}-key SOPS file (one process)",
         "values": s_times, "unit": "s", "goal": None, "goal_text": "≤ 1× sops -d",
         "ratio": f"`sops -d` of the same file: {fmt(o, 's')} → sigil/sops = {s / o:.2f}×",
         "ratio_goal": s / o <= 1.0},
    ]
