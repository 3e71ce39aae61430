#!/usr/bin/env python3
"""Write seed corpora for the fuzz targets (fuzz/corpus/<target>/) from
testdata/: the conflists, each plugin object of them as a plugin config,
the stdin of every bad-input case, plus hand-made store records, results
of every version, CNI_ARGS and addresses. Run by scripts/fuzz-smoke.sh."""
import hashlib, json, os, re, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "fuzz", "corpus")
targets = ["config_ipam", "config_bridge6", "config_firewall6", "result_roundtrip",
           "cni_args", "dispatch", "store_record", "from_interface", "conflist", "rules_line"]
seeds = {t: [] for t in targets}


def expand(s):
    s = s.replace("{{DATADIR}}", "/tmp/cni6-fuzz-data").replace("{{NETWORK}}", "net1")
    s = s.replace("{{NETNS}}", "/var/run/netns/x")
    # {{REPEAT:n:text}}: keep seeds small
    return re.sub(r"\{\{REPEAT:(\d+):(.+?)\}\}", lambda m: m.group(2) * min(int(m.group(1)), 64), s)


def expand_json(v):
    if isinstance(v, str):
        return expand(v)
    if isinstance(v, list):
        return [expand_json(x) for x in v]
    if isinstance(v, dict):
        return {k: expand_json(x) for k, x in v.items()}
    return v


configs = []
cdir = os.path.join(root, "testdata", "conflists")
for f in sorted(os.listdir(cdir)):
    b = open(os.path.join(cdir, f), "rb").read()
    seeds["conflist"].append(b)
    lst = json.loads(b)
    for p in lst.get("plugins", []):
        c = dict(p, cniVersion=lst.get("cniVersion", "1.0.0"), name=lst.get("name", "n"))
        configs.append(json.dumps(c).encode())

bdir = os.path.join(root, "testdata", "bad-input")
for f in sorted(os.listdir(bdir)):
    case = json.load(open(os.path.join(bdir, f)))
    if "stdinJson" in case:
        b = json.dumps(expand_json(case["stdinJson"])).encode()
    elif "stdin" in case:
        b = expand(case["stdin"]).encode()
    elif "stdinHex" in case:
        b = bytes.fromhex(case["stdinHex"])
    else:
        continue
    configs.append(b[:65536])
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
           "CNI_ARGS": "", "CNI_PATH": "/opt/cni/bin", "CNI_COMMAND": case.get("command", "ADD")}
    env.update({k: expand(v) for k, v in case.get("env", {}).items()})
    for k in case.get("unset", []):
        env.pop(k, None)
    order = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "CNI_COMMAND"]
    fields = [(env[k] if env.get(k) else ("\x01" if k in env else "")).encode() for k in order]
    seeds["dispatch"].append(b"\0".join(fields) + b"\0" + b[:65536])
    if "CNI_ARGS" in case.get("env", {}):
        seeds["cni_args"].append(expand(case["env"]["CNI_ARGS"]).encode())

for t in ["config_ipam", "config_bridge6", "config_firewall6"]:
    seeds[t] += configs

result = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "cluster0", "mac": "02:00:00:00:00:01"},
                         {"name": "veth1", "mac": "02:00:00:00:00:02"},
                         {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/x", "mtu": 1420}],
          "ips": [{"address": "fd8c:1f0a:77e3:0:1:1::10/96", "gateway": "fd8c:1f0a:77e3:0:1:1::1", "interface": 2}],
          "routes": [{"dst": "::/0", "gw": "fd8c:1f0a:77e3:0:1:1::1"}],
          "dns": {"nameservers": ["fd00::53"], "search": ["svc.cluster.local"]}}
for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]:
    r = json.loads(json.dumps(result))
    r["cniVersion"] = v
    if v.startswith("0."):
        for ip in r["ips"]:
            ip["version"] = "6"
    seeds["result_roundtrip"].append(json.dumps(r).encode())
seeds["result_roundtrip"].append(b'{"ip6":{"ip":"fd00::1/64"}}')

seeds["cni_args"] += [b"", b"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
                      b"IP=fd00::10;MAC=02:00:00:00:00:09", b"a=b=c", b";;=x"]
rec = {"version": 1, "network": "net1", "containerId": "c1", "ifname": "eth0", "slot": "10",
       "addresses": ["fd8c:1f0a:77e3:0:1:1::10/96"], "podNamespace": "default", "podName": "web-0",
       "bootId": "boot", "created": 1763700000}
seeds["store_record"] += [json.dumps(rec).encode(), json.dumps(dict(rec, version=2)).encode(),
                          json.dumps(dict(rec, containerId="c2")).encode(), b"10", b"c1@eth0", b"ffffffff"]
import ipaddress
for a, p, l in [("fd8c:1f0a:77e3:0:1::5", 64, 80), ("2001:db8:7:12::1", 64, 80),
                ("2001:db8::1", 96, 80), ("::", 0, 104), ("ffff::", 128, 128)]:
    seeds["from_interface"].append(ipaddress.IPv6Address(a).packed + bytes([p, l]))
seeds["rules_line"] += [
    b'-A CNI6-FW -d fd00::10/128 -m comment --comment "firewall6 net=n if=eth0 id=c1" -j CNI6-P-abc',
    b"-N CNI6-FW\n:CNI6-IN - [0:0]\n-A FORWARD -j CNI6-FW",
]

for t, items in seeds.items():
    d = os.path.join(corpus, t)
    os.makedirs(d, exist_ok=True)
    for b in items:
        with open(os.path.join(d, hashlib.sha1(b).hexdigest()), "wb") as fh:
            fh.write(b)
    print(f"{t}: {len(items)} seeds", file=sys.stderr)
