# paid doctor's probe, run with python3 in a sandbox of each configured image.
# Prints one JSON object: the sandbox's routes and default gateway (with
# egress control it has none: no network at all), what the metering proxy
# answered through the sandbox's relay and the forwarder, which of the
# targets given as arguments (host:port, this machine's own addresses)
# answered a TCP connect, and which of the executables in PAID_DOCTOR_EXES
# are missing.
import json, os, shutil, socket, sys, urllib.error, urllib.request

out = {"routes": [], "gateway": None, "gateway_answers": False, "proxy_status": None, "proxy_error": None,
       "reached": [], "missing": []}
ip = lambda hex_le: socket.inet_ntoa(int(hex_le, 16).to_bytes(4, "little"))
try:
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2:
                out["routes"].append("%s via %s dev %s" % (ip(fields[1]), ip(fields[2]), fields[0]))
                if fields[1] == "00000000":
                    out["gateway"] = ip(fields[2])
except OSError as e:
    out["route_error"] = str(e)

# Whether the default gateway answers (even a refused connection is an
# answer), to tell a route into the host from a dead end.
if out["gateway"]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((out["gateway"], 9))
        out["gateway_answers"] = True
    except ConnectionRefusedError:
        out["gateway_answers"] = True
    except Exception:
        pass
    finally:
        s.close()

url = os.environ.get("PAID_DOCTOR_PROXY_URL")
if url:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    bad = "paid-doctor-not-a-token"
    req = urllib.request.Request(url.rstrip("/") + "/v1/models", headers={"Authorization": "Bearer " + bad, "x-api-key": bad})
    try:
        out["proxy_status"] = opener.open(req, timeout=5).status
    except urllib.error.HTTPError as e:
        out["proxy_status"] = e.code
    except Exception as e:
        out["proxy_error"] = str(e)

for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
        out["reached"].append(target)
    except Exception:
        pass
    finally:
        s.close()

out["missing"] = [e for e in os.environ.get("PAID_DOCTOR_EXES", "").split() if shutil.which(e) is None]
print(json.dumps(out), flush=True)
