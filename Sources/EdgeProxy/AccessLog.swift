import HTTPCaching
import Logging

/// One line per request: method, URL, status, bytes, duration, cache result.
struct AccessLog: Sendable {
    let logger: Logger
    let enabled: Bool

    func record(
        method: String, url: String, status: Int, bytes: Int, seconds: Double, cacheStatus: String, peer: String?
    ) {
        guard enabled else { return }
        let milliseconds = (seconds * 10_000).rounded() / 10
        logger.info(
            "\(method) \(url) \(status) \(bytes) \(milliseconds)ms",
            metadata: ["cache": "\(cacheStatus)", "peer": "\(peer ?? "-")"])
    }
}
