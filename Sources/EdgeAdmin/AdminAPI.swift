import CacheStore
import CacheTransaction
import EdgeTelemetry
import Foundation
import HTTPCaching
import Logging
import OutpostConfig
import PurgeJournal

/// One request to the admin listener, body included.
package struct AdminRequest: Sendable {
    package var method: String
    package var path: String
    package var headers: HeaderFields
    package var body: [UInt8]
    package var peer: String?

    package init(method: String, path: String, headers: HeaderFields, body: [UInt8], peer: String?) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.peer = peer
    }
}

/// An admin answer: JSON, or Prometheus text for /metrics.
package struct AdminResponse: Sendable {
    package var status: Int
    package var contentType = "application/json"
    package var body: [UInt8]
    package var headers: [(String, String)] = []

    static func json(_ status: Int, _ object: [String: Any]) -> AdminResponse {
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return AdminResponse(status: status, body: Array(data) + [0x0A])
    }

    package static func error(_ status: Int, _ message: String) -> AdminResponse {
        json(status, ["error": message])
    }
}

/// The admin API (docs/admin-api.md): routes, authentication and the work behind them. The
/// listener (`AdminTask`) only moves bytes.
package struct AdminAPI: Sendable {
    package let settings: @Sendable () -> OutpostConfiguration
    let store: CacheStore
    let telemetry: Telemetry
    let clock: any CacheClock
    let logger: Logger
    /// `cluster.purge_journal`: purges go to every node through it.
    let journal: PurgeJournal?

    package init(
        settings: @escaping @Sendable () -> OutpostConfiguration, store: CacheStore, telemetry: Telemetry,
        clock: any CacheClock, logger: Logger, journal: PurgeJournal? = nil
    ) {
        self.settings = settings
        self.store = store
        self.telemetry = telemetry
        self.clock = clock
        self.logger = logger
        self.journal = journal
    }

    package func handle(_ request: AdminRequest) async -> AdminResponse {
        let route = (request.method, request.path)
        if request.path == "/health" {
            guard request.method == "GET" || request.method == "HEAD" else { return methodNotAllowed("GET") }
            // Degraded still serves (a load balancer keeps sending traffic): responses pass
            // through unstored while the disk is full; stored ones may be held back while the
            // purge journal is being caught up with.
            var reasons: [String] = []
            var since: Double?
            if case .degraded(let degraded) = store.writeHealth {
                reasons.append("store: \(degraded.reason); responses are served but not stored")
                since = degraded.since
            }
            if let reason = journal?.healthReason { reasons.append(reason) }
            guard reasons.isEmpty else {
                var answer: [String: Any] = ["status": "degraded", "reasons": reasons]
                if let since { answer["since"] = Int(since) }
                return .json(200, answer)
            }
            return .json(200, ["status": "ok"])
        }
        let known = ["/purge": "POST", "/stats": "GET", "/metrics": "GET"]
        guard let allowed = known[request.path] else {
            return .error(404, "no such admin route: \(request.path)")
        }
        // Every route but /health needs the token when one is configured (RFC 6750).
        if let token = settings().admin.token, !AdminToken.authorizes(request.headers["Authorization"], token: token) {
            logger.warning(
                "admin request refused: missing or wrong bearer token",
                metadata: ["path": "\(request.path)", "peer": "\(request.peer ?? "-")"])
            var response = AdminResponse.error(401, "a valid bearer token is required (Authorization: Bearer …)")
            response.headers.append(("WWW-Authenticate", "Bearer realm=\"outpost-admin\""))
            return response
        }
        guard request.method == allowed || (allowed == "GET" && request.method == "HEAD") else {
            return methodNotAllowed(allowed)
        }
        switch route.1 {
        case "/purge": return await purge(request)
        case "/stats": return stats()
        default: return metrics()
        }
    }

    private func methodNotAllowed(_ allowed: String) -> AdminResponse {
        var response = AdminResponse.error(405, "method not allowed: use \(allowed)")
        response.headers.append(("Allow", allowed == "GET" ? "GET, HEAD" : allowed))
        return response
    }

    private func purge(_ request: AdminRequest) async -> AdminResponse {
        let parsed: PurgeRequest
        do {
            parsed = try PurgeRequest.parse(request.body)
        } catch {
            logger.notice(
                "bad purge request", metadata: ["error": "\(error.message)", "peer": "\(request.peer ?? "-")"])
            return .error(400, error.message)
        }
        let purge = Purge(parsed.target, soft: parsed.soft, time: clock.now())
        do {
            // With a journal, the purge is appended and applied here in journal order; when the
            // journal cannot take it, it is applied here and the answer says it was not
            // journaled (docs/fleet.md).
            var journalNote: [String: Any] = ["journaled": false]
            let count: Int
            switch try await journal?.post(purge) {
            case .journaled(let sequence, let objects)?:
                count = objects
                journalNote = ["journaled": true, "sequence": Int(sequence)]
            case .notJournaled(let reason)?:
                count = try await store.purge(purge)
                telemetry.recordPurge(purge, objects: count)
                journalNote["journal_error"] = reason
            case nil:
                count = try await store.purge(purge)
                telemetry.recordPurge(purge, objects: count)
            }
            logger.info(
                "purged",
                metadata: [
                    "target": "\(describe(parsed.target))", "soft": "\(parsed.soft)", "objects": "\(count)",
                    "peer": "\(request.peer ?? "-")", "journaled": "\(journalNote["journaled"] ?? false)",
                ])
            var answer: [String: Any] = ["purged": count, "soft": parsed.soft]
            answer.merge(journalNote) { $1 }
            switch parsed.target {
            case .url(let url): answer["url"] = url
            case .prefix(let prefix): answer["prefix"] = prefix
            case .tags(let tags): answer["tags"] = tags
            }
            return .json(200, answer)
        } catch {
            logger.error("purge failed", metadata: ["target": "\(describe(parsed.target))", "error": "\(error)"])
            return .error(500, "purge failed: \(error)")
        }
    }

    private func describe(_ target: Purge.Target) -> String {
        switch target {
        case .url(let url): "url \(url)"
        case .prefix(let prefix): "prefix \(prefix)"
        case .tags(let tags): "tags \(tags.joined(separator: " "))"
        }
    }

    private func storeFigures() -> (StoreUsage, Int) {
        let usage = (try? store.usage()) ?? StoreUsage()
        let entries = (try? store.entryCount()) ?? 0
        return (usage, entries)
    }

    private func stats() -> AdminResponse {
        let (usage, entries) = storeFigures()
        var statistics = telemetry.statistics(
            usage: usage, entries: entries, maxBytes: store.configuration.maxStoreSize,
            degraded: store.writeHealth != .ok)
        if let journal { statistics["journal"] = journal.statistics() }
        return .json(200, statistics)
    }

    private func metrics() -> AdminResponse {
        let (usage, entries) = storeFigures()
        telemetry.updateStore(
            usage: usage, entries: entries, maxBytes: store.configuration.maxStoreSize,
            degraded: store.writeHealth != .ok)
        return AdminResponse(
            status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
            body: telemetry.registry.emitToBuffer())
    }
}
