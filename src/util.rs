//! Small helpers every layer uses: poison-tolerant locking and panic messages (no panic
//! may cross into GStreamer's C code or a foreign callback, so panics are caught and
//! reported as text).

use std::sync::{Mutex, MutexGuard};

/// Lock a mutex, recovering the data if a panic poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text of a caught panic (`std::panic::catch_unwind`'s payload).
pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_of_both_payload_kinds() {
        let p = std::panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(&p), "static text");
        let n = 3;
        let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&p), "formatted 3");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&p), "unknown panic");
    }

    #[test]
    fn lock_recovers_a_poisoned_mutex() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}

/// First delay before reconnecting to something that dropped (a live source, a broker);
/// the delay doubles after each failed attempt up to [`RECONNECT_MAX_DELAY`].
pub const RECONNECT_FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest delay between reconnection attempts.
pub const RECONNECT_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(8);
