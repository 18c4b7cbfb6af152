import CacheTransaction
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The process's open-file limit: raised from the soft to the hard limit at start, since every
/// client and origin connection is a descriptor and distributions ship a soft limit of 1024.
enum OpenFileLimit {
    struct Change: Equatable {
        var before: Int
        var now: Int
        var hard: Int
    }

    /// Raises the soft limit to the hard one; returns what it was and is.
    static func raise() -> Change {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Change(before: 0, now: 0, hard: 0) }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Change(before: clamp(before), now: clamp(limit.rlim_cur), hard: clamp(limit.rlim_max))
    }

    /// The soft limit now.
    static var current: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return clamp(limit.rlim_cur)
    }

    private static func clamp(_ value: rlim_t) -> Int { value == rlim_t.max ? Int.max : Int(clamping: value) }

    /// `server.max_connections` when the configuration leaves it out: half the descriptors
    /// (the other half for origin connections, the store and logs), at least 64.
    static func defaultMaxConnections(openFiles: Int) -> Int { max(64, min(openFiles, 1 << 20) / 2) }
}

/// Counts a listener's open connections and turns away those past `server.max_connections`
/// with a `503` and a close, instead of letting the process run out of descriptors (where
/// accepting fails, every connection's origin fetch fails, and the listener can only back off).
///
/// When descriptors run out anyway (`max_connections` set above what the limit allows, or
/// origin connections taking the rest), accepting fails with EMFILE. SwiftNIO's listener
/// then keeps its read pending and the socket readable, and retries at once, forever (a core
/// at 100 %, no connection served). So the gate keeps one descriptor in reserve
/// (``DescriptorReserve``): on EMFILE it is given back, the next accept succeeds, and that
/// connection is turned away with a 503 like any connection past the limit; the reserve is
/// taken again once it closes.
final class ConnectionGate: Sendable {
    private let open = NIOLockedValueBox(0)
    private let refusals = RateLimitedLog(interval: .seconds(10))
    let reserve = DescriptorReserve()

    var openConnections: Int { open.withLockedValue { $0 } }

    /// Admits `channel` if there is room under `limit` and descriptors are not short (and
    /// counts it until it closes); false when it was turned away. Call it before adding any
    /// handler: the 503 is written as raw bytes straight to the socket.
    func admit(_ channel: Channel, limit: Int, logger: Logger) -> Bool {
        let short = !reserve.isHeld
        let admitted =
            !short
            && open.withLockedValue { count -> Bool in
                guard count < limit else { return false }
                count += 1
                return true
            }
        guard admitted else {
            refusals.note(logger) { count in
                (
                    short
                        ? "out of file descriptors: turning connections away with 503"
                        : "connection limit reached: turning connections away with 503",
                    ["limit": "\(limit)", "refused": "\(count)", "open_files_limit": "\(OpenFileLimit.current)"]
                )
            }
            let reserve = self.reserve
            channel.writeAndFlush(ConnectionGate.serviceUnavailable).whenComplete { _ in
                channel.close(promise: nil)
            }
            if short { channel.closeFuture.whenComplete { _ in reserve.take() } }
            return false
        }
        channel.closeFuture.whenComplete { [open] _ in open.withLockedValue { $0 -= 1 } }
        return true
    }

    static let serviceUnavailable = ByteBuffer(
        string:
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
            + "Content-Length: 28\r\n\r\ntoo many connections, retry\n")
}

/// One descriptor held open (on /dev/null) so that a process out of descriptors can still
/// accept a connection to refuse it (see ``ConnectionGate``).
final class DescriptorReserve: Sendable {
    private let descriptor = NIOLockedValueBox<Int32>(-1)
    /// Run when the reserve is taken again after a release: the listener accepts at once
    /// (the next waiting connection is refused or, if descriptors came free, served) instead
    /// of after NIO's one-second accept backoff.
    private let retaken = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)

    init() { take() }

    var isHeld: Bool { descriptor.withLockedValue { $0 >= 0 } }

    func whenRetaken(_ action: @escaping @Sendable () -> Void) { retaken.withLockedValue { $0 = action } }

    /// Opens the reserve if it is not held (fails quietly while descriptors are still short).
    func take() {
        let reopened = descriptor.withLockedValue { fd -> Bool in
            guard fd < 0 else { return false }
            fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            return fd >= 0
        }
        if reopened { retaken.withLockedValue { $0 }?() }
    }

    /// Gives the reserve back; true when there was one.
    @discardableResult
    func release() -> Bool {
        descriptor.withLockedValue { fd in
            guard fd >= 0 else { return false }
            close(fd)
            fd = -1
            return true
        }
    }

    deinit { release() }
}

/// Sits first in a listener's pipeline: logs accept failures (out of descriptors, of memory)
/// at most once per interval, before NIO's `AcceptBackoffHandler` swallows them, and on
/// EMFILE or ENFILE gives the gate's reserve descriptor back so the next accept can succeed
/// and be refused (see ``ConnectionGate``).
final class AcceptErrorLog: ChannelInboundHandler, Sendable {
    typealias InboundIn = Channel

    private let logger: Logger
    private let reserve: DescriptorReserve?
    private let log = RateLimitedLog(interval: .seconds(10))

    init(logger: Logger, reserve: DescriptorReserve?) {
        self.logger = logger
        self.reserve = reserve
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A read issued from here goes straight to the socket, past the accept backoff.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        reserve?.whenRetaken { loop.execute { bound.value.read() } }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let error = error as? IOError {
            if error.errnoCode == EMFILE || error.errnoCode == ENFILE { reserve?.release() }
            log.note(logger) { count in
                (
                    "accepting connections failed",
                    ["error": "\(error)", "times": "\(count)", "open_files_limit": "\(OpenFileLimit.current)"]
                )
            }
        }
        context.fireErrorCaught(error)
    }
}
