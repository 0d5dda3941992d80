//! Mounting the operator console (crate `leasehold-console`) at `/`: its
//! token check over this server's [`TokenStore`], its clock over the
//! server's [`Clock`], and the shared event log that the server's recording
//! store feeds (API, reaper and console writes alike).

use std::sync::Arc;

use leasehold_console::{ConsoleAuth, ConsoleState, Principal};

use crate::tokens::{Role, TokenStore};
use crate::AppState;

/// The console's view of the server's tokens.
struct TokenAuth(Arc<TokenStore>);

impl ConsoleAuth for TokenAuth {
    fn verify(&self, secret: &str) -> Option<Principal> {
        let id = self.0.verify(secret)?;
        let role = match id.role {
            Role::Reader => leasehold_console::Role::Reader,
            Role::Worker => leasehold_console::Role::Worker,
            Role::Operator => leasehold_console::Role::Operator,
        };
        Some(Principal::new(id.name, role))
    }
}

/// The console state for this server: no tokens configured means every
/// visitor is an operator (the server then listens on loopback only).
pub fn console_state(state: &AppState) -> ConsoleState {
    let auth: Option<Arc<dyn ConsoleAuth>> = if state.tokens.is_open() {
        None
    } else {
        Some(Arc::new(TokenAuth(state.tokens.clone())))
    };
    let clock = state.clock.clone();
    ConsoleState::with_events(
        state.store.clone(),
        state.console_events.clone(),
        auth,
        Arc::new(move || clock.now()),
    )
    .with_max_attempts(state.max_attempts)
}
