import CacheStore
import Foundation
import Logging
import PostgresNIO

/// A purge posted to this node: appended to the journal, then applied here in order.
extension PurgeJournal {
    /// Appends a purge posted to this node and applies it here in journal order. When the
    /// journal cannot take it the answer says so and the caller applies it locally.
    package func post(_ purge: Purge) async throws -> JournalPosting {
        let sequence: Int64
        do {
            sequence = try await append(purge)
        } catch {
            let message = JournalErrors.describe(error)
            logger.error("purge not journaled", metadata: ["journal": "\(location)", "error": "\(message)"])
            let unreachable = (error as? PSQLError)?.code == .connectionError || error is JournalTimeout
            return .notJournaled(reason: unreachable ? "the purge journal is unreachable: \(message)" : message)
        }
        // This node applies it in order with the others (its listening connection is told
        // like every node's); the answer waits for that, within the timeout.
        if let connection = status.withLockedValue({ $0.state == .live ? $0.connection : nil }) {
            do {
                try await catchUp(connection)
                if let count = status.withLockedValue({ $0.counts[sequence] }) {
                    return .journaled(sequence: sequence, objects: count)
                }
            } catch {
                logger.warning(
                    "journaled purge not applied in order yet: applying it here now (again later in order)",
                    metadata: ["seq": "\(sequence)", "error": "\(JournalErrors.describe(error))"])
            }
        }
        // Not caught up: applied here now, and again (counted then) when its turn comes.
        do {
            return .journaled(sequence: sequence, objects: try await store.purge(purge))
        } catch {
            logger.error(
                "journaled purge not applied here yet; it will be in order",
                metadata: ["seq": "\(sequence)", "error": "\(error)"])
            return .journaled(sequence: sequence, objects: 0)
        }
    }

    /// One transaction on a connection of its own, closed afterwards: the table is locked so
    /// that sequence numbers commit in order (a node that applied 7 must never find 6 appear
    /// later), the row is inserted with the server's clock, NOTIFY is sent (delivered at
    /// commit). A timeout closes the connection; the transaction then rolls back unless its
    /// COMMIT had already been taken.
    private func append(_ purge: Purge) async throws -> Int64 {
        let connection = try await within(settings.journalTimeout) { try await self.connect() }
        let entry = JournalEntry(purge.target)
        let node = self.node
        let logger = self.logger
        do {
            let sequence = try await bounded(connection) {
                try await connection.withTransaction(logger: logger) { connection in
                    try await connection.query("LOCK TABLE purges IN EXCLUSIVE MODE", logger: logger)
                    let rows = try await connection.query(
                        """
                        INSERT INTO purges (kind, value, soft, time, node)
                        VALUES (\(entry.kind), \(entry.value), \(purge.soft), now(), \(node))
                        RETURNING seq
                        """, logger: logger)
                    var sequence: Int64 = 0
                    for try await value in rows.decode(Int64.self) { sequence = value }
                    try await connection.query(
                        "SELECT pg_notify(\(Self.channel), \(String(sequence)))", logger: logger)
                    return sequence
                }
            }
            try? await connection.close()
            return sequence
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
