import EdgeTelemetry
import HTTPCaching
import Logging
import OutpostConfig

/// One line per request (docs/operations.md, "Access log"). As text: method, URL, status,
/// bytes and duration in the message, the rest as metadata. As JSON (`log.format = "json"`,
/// written by ``JSONLogHandler``): every field typed, for an ingestion pipeline.
struct AccessLog: Sendable {
    let logger: Logger
    let enabled: Bool
    var format = LogFormat.text

    /// - Parameters:
    ///   - cacheStatus: this cache's Cache-Status entry; nil when the response was cut short
    ///     (`note` says why).
    ///   - upstreamSeconds: time spent waiting for upstream response heads; nil when the
    ///     request made no upstream call.
    func record(
        method: String, url: String, status: Int, bytes: Int, seconds: Double, cacheStatus: CacheStatus?,
        note: String? = nil, peer: String?, upstreamSeconds: Double? = nil
    ) {
        guard enabled else { return }
        let milliseconds = Self.milliseconds(seconds)
        let upstream = upstreamSeconds.map(Self.milliseconds)
        switch format {
        case .text:
            var metadata: Logger.Metadata = [
                "cache": "\(cacheStatus?.headerValue ?? note ?? "-")", "peer": "\(peer ?? "-")",
            ]
            if let upstream { metadata["upstream_ms"] = "\(upstream)" }
            logger.info("\(method) \(url) \(status) \(bytes) \(milliseconds)ms", metadata: metadata)
        case .json:
            var metadata: Logger.Metadata = [
                "client": .string(peer ?? "-"), "method": .string(method), "url": .string(url),
                "status": .stringConvertible(status), "bytes": .stringConvertible(bytes),
                "duration_ms": .stringConvertible(milliseconds),
            ]
            if let cacheStatus {
                metadata["cache"] = .string(CacheResult(cacheStatus).rawValue)
                metadata["cache_status"] = .string(cacheStatus.headerValue)
                if let forward = cacheStatus.forward { metadata["fwd"] = .string(forward.rawValue) }
            } else {
                metadata["cache"] = "aborted"
            }
            if let note { metadata["note"] = .string(note) }
            if let upstream { metadata["upstream_ms"] = .stringConvertible(upstream) }
            logger.info("access", metadata: metadata)
        }
    }

    /// Seconds as milliseconds to a tenth.
    static func milliseconds(_ seconds: Double) -> Double { (seconds * 10_000).rounded() / 10 }
}
