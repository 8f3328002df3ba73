"""kube.py - what the kubelet makes of a container in docker/k8s/, for the
tests that run the manifests' commands outside Kubernetes: tests/e2e_deploy.sh
(the plain binary, imports cores and env_values) and tests/e2e_image.sh (in
the image, through the command line below).

    python3 tests/kube.py MANIFEST [--index I] [--entrypoint JSON] [--cmd JSON]
                          [--claim CLAIM=HOSTDIR]... [--emptydir-root DIR]

reads the first container of the pod template of MANIFEST (a Deployment or
a Job) and prints, one item a line:

    completions N            (an Indexed Job)
    user UID:GID             (the pod's or container's securityContext)
    env NAME=VALUE           (as the kubelet fills it, see env_values)
    mount HOSTDIR PATH ro|rw (each volumeMount; a PVC via --claim, an
                              emptyDir as DIR/emptydir-NAME)
    arg A                    (the command line, $(VAR) expanded)

The command line is the kubelet's: `command` replaces the image's ENTRYPOINT
and drops its CMD, `args` alone replace CMD; $(VAR) is expanded from the
container's env, $$ is a literal $, an unknown $(VAR) stays as written. With
--index, an Indexed Job's pod gets JOB_COMPLETION_INDEX=I, as the Job
controller sets it. Exits 1 with a message on what it cannot map.
"""
import argparse
import json
import re
import sys

import yaml

INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def cores(q):
    """A CPU quantity ("2", "500m", 1.5) in whole cores, rounded up, as the
    kubelet does for resourceFieldRef limits.cpu with divisor 1."""
    q = str(q)
    milli = int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)
    return -(-milli // 1000)


def env_values(c, index=None):
    """The container's env as the kubelet fills it: plain values,
    resourceFieldRef limits.cpu (divisor 1) as whole cores, and with an index
    the completion-index annotation's fieldRef. Other valueFrom entries
    (other fieldRefs, secrets) are left out."""
    out = {}
    for e in c.get("env", []):
        vf = e.get("valueFrom", {})
        if "value" in e:
            out[e["name"]] = str(e["value"])
        elif vf.get("resourceFieldRef", {}).get("resource") == "limits.cpu":
            out[e["name"]] = str(cores(c["resources"]["limits"]["cpu"]))
        elif index is not None and vf.get("fieldRef", {}).get("fieldPath") == INDEX_ANNOTATION:
            out[e["name"]] = str(index)
    return out


def expand(s, values):
    """Kubernetes' $(VAR) expansion of command and args."""
    def one(m):
        if m.group(0) == "$$":
            return "$"
        return values.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\((\w+)\)", one, s)


def command_line(c, entrypoint, cmd, values):
    if c.get("command"):
        argv = list(c["command"]) + list(c.get("args") or [])
    elif c.get("args"):
        argv = list(entrypoint) + list(c["args"])
    else:
        argv = list(entrypoint) + list(cmd)
    return [expand(str(a), values) for a in argv]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--index", type=int)
    ap.add_argument("--entrypoint", default="[]")
    ap.add_argument("--cmd", default="[]")
    ap.add_argument("--claim", action="append", default=[])
    ap.add_argument("--emptydir-root")
    a = ap.parse_args()

    docs = [d for d in yaml.safe_load_all(open(a.manifest)) if d]
    objs = [d for d in docs if d.get("spec", {}).get("template")]
    if not objs:
        sys.exit("%s: no pod template" % a.manifest)
    spec = objs[0]["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    claims = dict(kv.split("=", 1) for kv in a.claim)
    lines = []

    indexed = spec.get("completionMode") == "Indexed"
    if indexed:
        lines.append("completions %d" % spec.get("completions", 1))
    sc = dict(pod.get("securityContext", {}))
    sc.update(c.get("securityContext", {}))
    if "runAsUser" in sc:
        lines.append("user %s:%s" % (sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"])))

    values = env_values(c, a.index)
    if indexed and a.index is not None:
        values["JOB_COMPLETION_INDEX"] = str(a.index)
    lines += ["env %s=%s" % kv for kv in sorted(values.items())]

    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"])
        if v is None:
            sys.exit("mount %s has no volume" % m["name"])
        ro = bool(m.get("readOnly"))
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                sys.exit("no --claim %s=HOSTDIR for %s" % (claim, m["mountPath"]))
            host = claims[claim]
            ro = ro or bool(v["persistentVolumeClaim"].get("readOnly"))
        elif "emptyDir" in v and a.emptydir_root:
            host = "%s/emptydir-%s" % (a.emptydir_root, m["name"])
        else:
            sys.exit("volume %s: cannot map %s" % (m["name"], sorted(v)))
        lines.append("mount %s %s %s" % (host, m["mountPath"], "ro" if ro else "rw"))

    argv = command_line(c, json.loads(a.entrypoint), json.loads(a.cmd), values)
    lines += ["arg " + x for x in argv]
    if any("\n" in x for x in lines):
        sys.exit("a value holds a newline; this line format cannot carry it")
    sys.stdout.write("".join(x + "\n" for x in lines))


if __name__ == "__main__":
    main()
