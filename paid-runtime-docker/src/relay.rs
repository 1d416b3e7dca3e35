//! The two relays of the egress path, as Python scripts run by the image's
//! `python3` (see the `egress` module docs for the path as a whole):
//! - [`FORWARDER_SCRIPT`], in the per-engine forwarder: accepts on a Unix
//!   socket in the forwarder's volume and connects to the metering proxy
//!   over TCP;
//! - [`SANDBOX_RELAY_SCRIPT`], a sandbox's keepalive: accepts on the
//!   sandbox's own loopback and connects to that socket.
//!
//! Both copy both ways with half-close, log a failed upstream connect to
//! stderr and close the client, and never exit because of one connection.

/// Where the forwarder's volume is mounted, in the forwarder (read-write)
/// and in every sandbox (read-only).
pub(crate) const SOCKET_DIR: &str = "/run/paid-egress";

/// The forwarder's socket, in [`SOCKET_DIR`].
pub(crate) const SOCKET_PATH: &str = "/run/paid-egress/proxy.sock";

/// The copy loop both relays run, one per direction: read, write, drain,
/// and at the end half-close the writer.
macro_rules! pipe_py {
    () => {
        r#"
async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except Exception:
        pass
"#
    };
}

/// The forwarder's relay: accept on the Unix socket `PAID_FWD_SOCKET`
/// (a stale one is removed first; the new one is mode 0666, so a sandbox's
/// relay connects whatever its uid), connect to `PAID_FWD_HOST:PAID_FWD_PORT`.
pub(crate) const FORWARDER_SCRIPT: &str = concat!(
    r#"
import asyncio, os, sys
SOCKET = os.environ["PAID_FWD_SOCKET"]
HOST = os.environ["PAID_FWD_HOST"]
PORT = int(os.environ["PAID_FWD_PORT"])

"#,
    pipe_py!(),
    r#"
async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 10)
    except Exception as e:
        print("paid-forwarder: upstream %s:%d unreachable: %s" % (HOST, PORT, e), file=sys.stderr, flush=True)
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    finally:
        for w in (up_w, client_w):
            try:
                w.close()
            except Exception:
                pass

async def main():
    try:
        os.unlink(SOCKET)
    except FileNotFoundError:
        pass
    os.umask(0o111)
    server = await asyncio.start_unix_server(handle, path=SOCKET, backlog=1024)
    os.chmod(SOCKET, 0o666)
    print("paid-forwarder: %s -> %s:%d" % (SOCKET, HOST, PORT), flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#
);

/// A sandbox's keepalive when it has a proxy to reach: listens on
/// `127.0.0.1:<argv[1]>` (before loading asyncio, so an early connection
/// waits in the backlog rather than being refused) and relays each
/// connection to the Unix socket `argv[2]`.
pub(crate) const SANDBOX_RELAY_SCRIPT: &str = concat!(
    r#"
import socket, sys
PORT = int(sys.argv[1])
SOCKET = sys.argv[2]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(1024)
import asyncio

"#,
    pipe_py!(),
    r#"
async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_unix_connection(SOCKET), 10)
    except Exception as e:
        print("paid-relay: %s unreachable: %s" % (SOCKET, e), file=sys.stderr, flush=True)
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    except Exception:
        pass
    finally:
        for w in (up_w, client_w):
            try:
                w.close()
            except Exception:
                pass

async def main():
    server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#
);

/// The argv of a sandbox whose keepalive is the relay on `port`.
pub(crate) fn sandbox_entrypoint(port: u16) -> Vec<String> {
    vec![
        "python3".to_string(),
        "-u".to_string(),
        "-c".to_string(),
        SANDBOX_RELAY_SCRIPT.to_string(),
        port.to_string(),
        SOCKET_PATH.to_string(),
    ]
}

/// Whether `/proc/net/tcp` (as `proc_net_tcp`) shows a socket listening on
/// `127.0.0.1:port`: the sandbox's relay is up.
pub(crate) fn relay_listening(proc_net_tcp: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    proc_net_tcp.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `sl local_address rem_address st ...`; 0A is LISTEN.
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_relays_are_valid_python_with_one_copy_loop() {
        for script in [FORWARDER_SCRIPT, SANDBOX_RELAY_SCRIPT] {
            assert_eq!(script.matches("async def pipe(").count(), 1, "{script}");
            let out = std::process::Command::new("python3")
                .args(["-c", "import sys; compile(sys.argv[1], 'relay', 'exec')", script])
                .output()
                .unwrap_or_else(|e| panic!("python3: {e}"));
            assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn the_relay_is_seen_listening_on_loopback_only() {
        let header =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let listening =
            format!("{header}   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 1\n");
        assert!(relay_listening(&listening, 3128));
        assert!(!relay_listening(&listening, 3129));
        let connected =
            format!("{header}   0: 0100007F:0C38 0100007F:D431 01 00000000:00000000 00:00000000 00000000 1000 0 2\n");
        assert!(!relay_listening(&connected, 3128), "an established connection is not a listener");
        let elsewhere =
            format!("{header}   0: 00000000:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1000 0 3\n");
        assert!(!relay_listening(&elsewhere, 3128), "a listener on 0.0.0.0 is not the relay");
        assert!(!relay_listening(header, 3128));
    }

    #[test]
    fn the_sandbox_relay_reaches_the_forwarders_socket() {
        let argv = sandbox_entrypoint(3128);
        assert_eq!(argv[..3], ["python3", "-u", "-c"]);
        assert_eq!(argv[4..], ["3128", "/run/paid-egress/proxy.sock"]);
        assert!(SOCKET_PATH.starts_with(SOCKET_DIR));
        assert!(
            SANDBOX_RELAY_SCRIPT.contains("open_unix_connection") && SANDBOX_RELAY_SCRIPT.contains("\"127.0.0.1\"")
        );
        assert!(FORWARDER_SCRIPT.contains("start_unix_server") && FORWARDER_SCRIPT.contains("0o666"));
    }
}
