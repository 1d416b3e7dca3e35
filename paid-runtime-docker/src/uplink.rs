//! Where the egress forwarder finds the host: the gateway of its uplink
//! network, for a daemon whose metering proxy listens on loopback only.

use std::net::{IpAddr, Ipv4Addr};

use bollard::query_parameters::InspectNetworkOptions;
use paid_core::Result;

use crate::runtime::DockerRuntime;

impl DockerRuntime {
    /// The host's address on the uplink network of the first endpoint: the
    /// egress forwarder's
    /// ([`EgressConfig::uplink_network`](crate::EgressConfig::uplink_network),
    /// default `bridge`), or `bridge` when egress is off. That is where the
    /// forwarder reaches a proxy whose
    /// [`proxy_host`](crate::EgressConfig::proxy_host) is `host-gateway`.
    /// `None` when the network has no IPv4 gateway.
    ///
    /// A daemon whose proxy listens on `127.0.0.1` also listens there, so
    /// sandboxes reach it with no configuration. The address is local only
    /// when the engine runs on this host.
    pub async fn uplink_gateway(&self) -> Result<Option<IpAddr>> {
        let shared = self.shared();
        let network = shared.egress.as_ref().map_or("bridge", |e| e.config.uplink_network.as_str());
        let Some(endpoint) = shared.endpoints.first() else { return Ok(None) };
        let inspect = endpoint
            .docker
            .inspect_network(network, None::<InspectNetworkOptions>)
            .await
            .map_err(endpoint.api("inspect the egress uplink network"))?;
        let configs = inspect.ipam.and_then(|ipam| ipam.config).unwrap_or_default();
        Ok(configs.iter().find_map(|c| gateway_of(c.gateway.as_deref(), c.subnet.as_deref())))
    }
}

/// An IPAM entry's IPv4 gateway: the recorded one, or else the subnet's
/// first host address, which the engine gives its bridge by default (the
/// default `bridge` network records no gateway on recent engines).
fn gateway_of(gateway: Option<&str>, subnet: Option<&str>) -> Option<IpAddr> {
    if let Some(ip) = gateway.and_then(|g| g.parse::<Ipv4Addr>().ok()) {
        return Some(IpAddr::V4(ip));
    }
    let (base, prefix) = subnet?.split_once('/')?;
    let base: Ipv4Addr = base.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some(IpAddr::V4(Ipv4Addr::from((u32::from(base) & mask) + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_recorded_or_the_subnets_first_host() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(gateway_of(Some("172.18.0.1"), Some("172.18.0.0/16")), ip("172.18.0.1"));
        assert_eq!(gateway_of(None, Some("172.17.0.0/16")), ip("172.17.0.1"));
        assert_eq!(gateway_of(Some("fd00::1"), Some("10.1.2.0/24")), ip("10.1.2.1"));
        assert_eq!(gateway_of(None, Some("fd00::/64")), None);
        assert_eq!(gateway_of(None, None), None);
    }
}
