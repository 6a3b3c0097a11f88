//! Each component's own section of the configuration, so that components
//! take only what they use and never import [`Config`] itself.

use super::Config;
use crate::health::{CheckConfig, CheckMode};
use crate::layers::buffer::BufferConfig;
use crate::layers::normalize::NormalizeConfig;
use crate::layers::static_files::StaticConfig;
use crate::proxy::ProxyConfig;
use crate::server::ServerConfig;
use crate::tls::TlsFiles;

impl Config {
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
            h2_max_streams: self.h2_max_streams,
            send_timeout: self.send_timeout,
            park_after: self.park_after,
        }
    }

    pub fn normalize(&self) -> NormalizeConfig {
        NormalizeConfig {
            trusted_proxies: self.trusted_proxies.clone(),
            request_id_header: self.request_id_header.clone(),
            underscore_headers: self.underscore_headers,
            max_uri: self.max_uri,
            hide_headers: self.hide_headers.clone(),
            max_headers: self.max_headers,
            upgrade_protocols: self.upgrade_protocols.clone(),
        }
    }

    pub fn proxy(&self) -> ProxyConfig {
        ProxyConfig {
            app_addr: self.app_addr(),
            connect_timeout: self.connect_timeout,
            upstream_timeout: self.upstream_timeout,
            pool_idle_timeout: self.pool_idle_timeout,
            pool_max_idle: self.pool_max_idle,
        }
    }

    /// `None` when static files are off.
    pub fn static_files(&self) -> Option<StaticConfig> {
        self.static_dir.as_ref().map(|dir| StaticConfig {
            dir: dir.clone(),
            prefix: self.static_prefix.clone(),
            cache_control: self.static_cache_control.clone(),
            fallthrough: self.static_fallthrough,
        })
    }

    /// `None` when request buffering is off.
    pub fn buffer(&self) -> Option<BufferConfig> {
        self.buffer_requests.map(|memory| BufferConfig {
            memory,
            budget: self.buffer_memory,
            dir: self.buffer_dir.clone(),
        })
    }

    /// `None` without a TLS listener.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls_listen?;
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    pub fn app_check(&self) -> CheckConfig {
        CheckConfig {
            app_addr: self.app_addr(),
            mode: match &self.app_health_path {
                Some(p) => CheckMode::Http(p.clone()),
                None => CheckMode::Tcp,
            },
            interval: self.app_check_interval,
            timeout: self.app_check_timeout,
        }
    }
}
