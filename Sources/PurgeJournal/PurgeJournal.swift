import CacheStore
import EdgeTelemetry
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOSSL
import OutpostConfig
import PostgresNIO

/// What became of a purge posted to this node's admin API with a journal configured.
package enum JournalPosting: Sendable, Equatable {
    /// Appended to the journal as `sequence`, and applied here in journal order: `objects`
    /// is what it covered in this node's store.
    case journaled(sequence: Int64, objects: Int)
    /// The journal could not take it, for `reason`; the caller applies it locally.
    case notJournaled(reason: String)
}

/// The fleet's purge journal on PostgreSQL (docs/fleet.md): every purge posted to any node
/// is appended to the `purges` table and announced with NOTIFY; every node LISTENs, applies
/// each purge in sequence order, and records the last sequence number it applied in its own
/// store (in the purge's write transaction). A node that starts or reconnects hides every
/// object stored before that moment until it has replayed what it missed, so nothing a
/// missed purge covers is served; objects it fetches meanwhile are served.
package final class PurgeJournal: Sendable {
    package enum State: String, Sendable {
        /// Not yet connected since this node started.
        case connecting
        /// Connected, replaying what this node has not applied.
        case replaying
        /// Connected and caught up: purges arrive as they are appended.
        case live
        /// The connection failed or was lost; retried with growing waits.
        case unreachable
    }

    struct Status {
        var state = State.connecting
        var connection: PostgresConnection?
        var applied: Int64 = 0
        var lastError: String?
        /// When `state` last changed (the cache's clock).
        var since: Double
        /// Objects each recent journal purge covered here, for the admin answer.
        var counts: [Int64: Int] = [:]
    }

    /// The NOTIFY channel; the payload is the new purge's sequence number.
    package static let channel = "outpost_purges"
    /// Rows read per query when catching up.
    static let batchSize = 500

    package let location: JournalLocation
    /// This node's name in the `nodes` table: `cluster.self`, else host name and port.
    package let node: String
    let settings: OutpostConfiguration.Cluster
    let store: CacheStore
    let telemetry: Telemetry
    let now: @Sendable () -> Double
    let logger: Logger
    let status: NIOLockedValueBox<Status>
    let gate = SerialGate()
    private let connections = NIOLockedValueBox(0)

    package init(
        location: JournalLocation, node: String, settings: OutpostConfiguration.Cluster, store: CacheStore,
        telemetry: Telemetry, now: @escaping @Sendable () -> Double, logger: Logger
    ) {
        self.location = location
        self.node = node
        self.settings = settings
        self.store = store
        self.telemetry = telemetry
        self.now = now
        self.logger = logger
        var initial = Status(since: now())
        initial.applied = (try? store.journalApplied()) ?? 0
        status = NIOLockedValueBox(initial)
        telemetry.journal.set(up: false)
        telemetry.journal.set(applied: initial.applied)
    }

    /// This node's name in the `nodes` table: `cluster.self`, else the host name and the
    /// traffic port (stable across restarts, unlike the CDN-Loop node id).
    package static func nodeName(selfURL: OriginURL?, port: Int) -> String {
        selfURL?.description ?? "\(ProcessInfo.processInfo.hostName):\(port)"
    }

    // MARK: running

    /// Connects, replays, listens; reconnects after a failure, waiting 0.5 s, then twice as
    /// long each time up to `cluster.journal_reconnect_max`. Returns when cancelled.
    package func run() async {
        var wait = 0.5
        while !Task.isCancelled {
            do {
                try await session { wait = 0.5 }
            } catch {
                guard !Task.isCancelled else { break }
                let message = JournalErrors.describe(error)
                let previous = status.withLockedValue { status -> State in
                    defer {
                        status.state = .unreachable
                        status.connection = nil
                        status.lastError = message
                    }
                    if status.state != .unreachable { status.since = now() }
                    return status.state
                }
                telemetry.journal.set(up: false)
                if previous != .unreachable {
                    logger.error(
                        "purge journal unreachable: purges posted to this node are applied here only, and purges posted elsewhere reach it when it reconnects",
                        metadata: ["journal": "\(location)", "error": "\(message)"])
                }
            }
            do {
                try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            } catch {
                break
            }
            wait = min(wait * 2, settings.journalReconnectMax)
        }
        let connection = status.withLockedValue { status in
            defer { status.connection = nil }
            return status.connection
        }
        try? await connection?.close()
    }

    /// One connection's life: prepare the tables, LISTEN, replay, then apply each purge as it
    /// is announced (and at least every `journal_poll_interval`, in case one was missed).
    /// Everything on this connection runs one statement at a time, behind ``gate``: a
    /// transaction on a PostgreSQL connection is the connection's, and one caller's BEGIN must
    /// never take in another caller's statements. Posted purges use connections of their own.
    private func session(connected: () -> Void) async throws {
        let connection = try await within(settings.journalTimeout) { try await self.connect() }
        do {
            try await bounded(connection) { try await self.prepare(connection) }
            try await connection.listen(on: Self.channel) { notifications in
                // Anything stored before now could be covered by a purge this node missed.
                store.hideObjects(storedBefore: now())
                setState(.replaying, connection: connection)
                try await catchUp(connection)
                store.showAllObjects()
                setState(.live, connection: connection)
                connected()
                logger.notice(
                    "purge journal: caught up",
                    metadata: [
                        "journal": "\(location)", "node": "\(node)",
                        "applied": "\(status.withLockedValue { $0.applied })",
                    ])
                let poll = settings.journalPollInterval
                let logger = self.logger
                let poller = Task {
                    do {
                        while true {
                            try await Task.sleep(for: .milliseconds(Int64(poll * 1000)))
                            try await self.catchUp(connection)
                            try await self.exclusively { try await self.trim(connection) }
                        }
                    } catch is CancellationError {
                    } catch {
                        // The connection is not to be trusted: closing it ends the session
                        // (the notifications fail) and a new one starts.
                        logger.warning(
                            "purge journal: catching up failed; reconnecting",
                            metadata: ["error": "\(JournalErrors.describe(error))"])
                        try? await connection.close()
                    }
                }
                defer { poller.cancel() }
                for try await _ in notifications {
                    try await catchUp(connection)
                }
                throw JournalErrors.Closed()
            }
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Runs one round trip with `journal_timeout`; when it runs out the connection is closed,
    /// which fails whatever else waits on it (postgres-nio's queries do not stop when their
    /// task is cancelled) and frees the gate.
    @discardableResult
    func bounded<T: Sendable>(
        _ connection: PostgresConnection, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        do {
            return try await within(settings.journalTimeout, operation)
        } catch let timeout as JournalTimeout {
            try? await connection.close()
            throw timeout
        }
    }

    /// Runs `body` alone on the listening connection (see ``session(connected:)``).
    func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await gate.enter()
        do {
            let result = try await body()
            await gate.leave()
            return result
        } catch {
            await gate.leave()
            throw error
        }
    }

    private func setState(_ state: State, connection: PostgresConnection?) {
        status.withLockedValue { status in
            if status.state != state { status.since = now() }
            status.state = state
            status.connection = connection
            status.lastError = nil
        }
        telemetry.journal.set(up: state == .live)
    }

    func connect() async throws -> PostgresConnection {
        let tls: PostgresConnection.Configuration.TLS =
            location.requiresTLS
            ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: tls)
        configuration.options.connectTimeout = .milliseconds(Int64(settings.journalTimeout * 1000))
        // The server gives up on a statement, or a wait for a lock, that outlives the timeout.
        let milliseconds = String(Int(settings.journalTimeout * 1000))
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", milliseconds), ("lock_timeout", milliseconds),
        ]
        let id = connections.withLockedValue { count in
            count += 1
            return count
        }
        return try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
    }

    /// Creates the tables when missing (one node at a time: an advisory lock) and records this
    /// node, with what its store has applied (the store is the truth: a new store starts at 0).
    private func prepare(_ connection: PostgresConnection) async throws {
        let logger = self.logger
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7310420313)", logger: logger)
            for statement in JournalSchema.create { try await connection.query(statement, logger: logger) }
        }
        let applied = try store.journalApplied()
        try await connection.query(
            """
            INSERT INTO nodes (node, applied, seen) VALUES (\(node), \(applied), now())
            ON CONFLICT (node) DO UPDATE SET applied = EXCLUDED.applied, seen = now()
            """, logger: logger)
    }

    // MARK: reporting

    /// `journal` in /stats.
    package func statistics() -> [String: Any] {
        let status = status.withLockedValue { $0 }
        var result: [String: Any] = [
            "state": status.state.rawValue, "node": node, "applied": Int(status.applied),
            "since": Int(status.since), "journal": location.description,
        ]
        if let error = status.lastError { result["error"] = error }
        if let hidden = store.hiddenBefore { result["hiding_stored_before"] = Int(hidden) }
        return result
    }

    /// Why /health says degraded, nil while the journal is live.
    package var healthReason: String? {
        let status = status.withLockedValue { $0 }
        guard status.state != .live else { return nil }
        if let hidden = store.hiddenBefore {
            return
                "purge journal \(status.state.rawValue): objects stored before \(Int(hidden)) are not served until this node has caught up"
        }
        return
            "purge journal \(status.state.rawValue): purges posted elsewhere reach this node when it reconnects; purges posted here are applied here only"
    }
}
