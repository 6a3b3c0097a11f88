//! The request path's middleware, one module per layer, each a tower
//! `Layer` + `Service` pair testable alone. [`crate::stack`] composes them,
//! outermost first, in this order:
//!
//! 1. [`access_log`] — one line and the request metrics per answer;
//! 2. [`normalize`] — request id, framing, hop-by-hop, client addresses;
//! 3. [`prefix`] — `PODGATE_STRIP_PREFIX`;
//! 4. compression (tower-http's, configured in the stack);
//! 5. [`static_files`] — `PODGATE_STATIC_DIR`;
//! 6. [`limit`] — body size and pace;
//! 7. [`buffer`] — `PODGATE_BUFFER_REQUESTS`;
//! 8. [`app_limit`] — `PODGATE_APP_CONCURRENCY`;
//!
//! then the [`crate::proxy`]. Layers share types only through [`crate::ctx`]
//! and never import one another.

pub mod access_log;
pub mod app_limit;
pub mod buffer;
pub mod limit;
pub mod normalize;
pub mod prefix;
pub mod static_files;
