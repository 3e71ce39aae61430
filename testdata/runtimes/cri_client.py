#!/usr/bin/env python3
"""A kubelet-like CRI client for the containerd tests (conformance/tests/containerd.rs).

Talks CRI v1 over containerd's unix socket with the generated stubs of PyPI's
`container-runtime-interface-api` (grpcio). Why Python: a Rust CRI client
(k8s-cri + tonic) would add a tokio/hyper/prost build to the 2-core CI,
while these stubs install as wheels in seconds.

Protocol: one JSON request per line on stdin, one JSON answer per line on
stdout: {"ok": ...} or {"error": "<gRPC status and containerd's own text>"}.
Requests: {"op": "run", "name", "namespace", "uid", "attempt"} →
{"id", "seconds"} (seconds = the RunPodSandbox RPC alone); {"op": "status",
"id"} → {"ip", "additional_ips", "state", "netns"}; {"op": "stop"|"remove",
"id"}; {"op": "list"} → [ids]; {"op": "runtime_status"} → [{"type",
"status", "reason", "message"}] (CRI Status conditions: NetworkReady shows
the CNI plugins' STATUS on containerd 2).
"""
import json
import sys
import time

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc


def netns_of(info):
    """The sandbox's network namespace path from the verbose status info."""
    try:
        spec = json.loads(info.get("info", "{}")).get("runtimeSpec", {})
        for ns in spec.get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network":
                return ns.get("path", "")
    except (ValueError, AttributeError):
        pass
    return ""


def handle(stub, req):
    op = req["op"]
    if op == "run":
        cfg = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=req["name"], namespace=req["namespace"], uid=req["uid"],
                attempt=req.get("attempt", 0)),
            hostname=req["name"][:63],
            log_directory=req.get("log_directory", ""),
            linux=api_pb2.LinuxPodSandboxConfig(
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(
                        network=api_pb2.POD, pid=api_pb2.CONTAINER, ipc=api_pb2.POD))),
            labels={"app": "cni6-test"},
        )
        t0 = time.monotonic()
        resp = stub.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=cfg), timeout=120)
        return {"id": resp.pod_sandbox_id, "seconds": time.monotonic() - t0}
    if op == "status":
        resp = stub.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=req["id"], verbose=True), timeout=60)
        st = resp.status
        return {
            "ip": st.network.ip,
            "additional_ips": [a.ip for a in st.network.additional_ips],
            "state": api_pb2.PodSandboxState.Name(st.state),
            "netns": netns_of(dict(resp.info)),
        }
    if op == "stop":
        stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=req["id"]), timeout=120)
        return {}
    if op == "remove":
        stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=req["id"]), timeout=120)
        return {}
    if op == "runtime_status":
        resp = stub.Status(api_pb2.StatusRequest(verbose=False), timeout=60)
        return [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                for c in resp.status.conditions]
    if op == "list":
        resp = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=60)
        return [s.id for s in resp.items]
    raise ValueError(f"unknown op {op!r}")


def main():
    sock = sys.argv[1]
    channel = grpc.insecure_channel(f"unix://{sock}")
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = api_pb2_grpc.RuntimeServiceStub(channel)
    print(json.dumps({"ok": "ready"}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = {"ok": handle(stub, json.loads(line))}
        except grpc.RpcError as e:
            out = {"error": f"{e.code().name}: {e.details()}"}
        except Exception as e:  # a bad request: say so, keep serving
            out = {"error": f"client: {type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
