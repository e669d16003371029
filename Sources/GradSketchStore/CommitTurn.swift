#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A writer's turn at steps 2–3 of a commit (Spec §7.2 "Taking turns"): an advisory
/// `flock(2)` on the store's `versions/` directory, so writers on one host build their
/// manifests one after another instead of all building one, all but one losing the link, and
/// all building again.
///
/// Without turns, N writers racing on one store do O(N²) manifest builds (64 writers on two
/// cores: ~15 lost links each, measured). The turn is an optimisation only: the link(2) of
/// step 3 still decides who commits, so a turn that cannot be taken (no `versions/` yet, a
/// filesystem without flock, such as NFS for a directory, or a holder that does not let go
/// within ``patience`` seconds, e.g. a stopped process) is simply skipped.
package struct CommitTurn: ~Copyable {
    /// How long a writer waits for the turn before going ahead without it.
    package static let patience = 10.0
    /// The descriptor holding the lock, or -1 when the writer goes without a turn.
    private let descriptor: Int32

    /// Waits (polling, so the wait is bounded) for the turn on `versionsDirectory`.
    package init(versionsDirectory: String) {
        let opened = open(versionsDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard opened >= 0 else { descriptor = -1; return }
        var waited = 0.0
        var pause = 0.001
        while flock(opened, LOCK_EX | LOCK_NB) != 0 {
            // EWOULDBLOCK: another writer's turn. Anything else: no turns here.
            guard errno == EWOULDBLOCK || errno == EINTR, waited < Self.patience else {
                close(opened)
                descriptor = -1
                return
            }
            usleep(UInt32(pause * 1_000_000))
            waited += pause
            pause = min(pause * 2, 0.008)
        }
        descriptor = opened
    }

    /// Whether this writer holds the turn (false: it goes ahead without one).
    package var isHeld: Bool { descriptor >= 0 }

    deinit {
        // Closing the descriptor releases the lock.
        if descriptor >= 0 { close(descriptor) }
    }
}
