import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import OutpostConfig

/// Checks each peer of `[cluster] peers` every `cluster.health_interval` seconds with
/// `OPTIONS *` (RFC 9110 §9.3.7; `Max-Forwards: 0`, so nothing on the way forwards it): a 2xx
/// within `cluster.health_timeout` is a good check, anything else a failed one
/// (``PeerSet/checked(_:ok:)`` applies `health_fall` and `health_rise`). Runs until cancelled.
package struct PeerHealthChecks: Sendable {
    /// The pipeline in force (its peer group, origin client and settings change on reload).
    let current: @Sendable () -> CachePipeline

    package init(current: @escaping @Sendable () -> CachePipeline) {
        self.current = current
    }

    package func run() async {
        while !Task.isCancelled {
            let pipeline = current()
            let interval = pipeline.configuration.cluster.healthInterval
            if let peers = pipeline.peers {
                await withTaskGroup(of: Void.self) { group in
                    for peer in peers.others {
                        group.addTask {
                            let ok = await Self.check(
                                peer, upstream: pipeline.upstream,
                                timeout: pipeline.configuration.cluster.healthTimeout, logger: pipeline.logger)
                            peers.checked(peer, ok: ok)
                        }
                    }
                }
            }
            do {
                try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
            } catch {
                return
            }
        }
    }

    /// One check: whether `peer` answered `OPTIONS *` with a 2xx in time.
    static func check(_ peer: OriginURL, upstream: any Origin, timeout: Double, logger: Logger) async -> Bool {
        var headers = HeaderFields()
        headers.add("Host", peer.authority)
        headers.add("Max-Forwards", "0")
        let request = UpstreamRequest(origin: peer, method: "OPTIONS", pathAndQuery: "*", headers: headers, body: nil)
        // The check may not wait on the origin client's own (longer) timeouts.
        let outcome = NIOLockedValueBox<Bool?>(nil)
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            @Sendable func settle(_ ok: Bool) {
                let first = outcome.withLockedValue { settled in
                    guard settled == nil else { return false }
                    settled = ok
                    return true
                }
                if first { continuation.resume(returning: ok) }
            }
            let exchange = Task {
                do {
                    let response = try await upstream.execute(request, logger: logger)
                    for try await _ in response.body {}
                    settle((200..<300).contains(response.status))
                } catch {
                    logger.debug("peer health check failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
                    settle(false)
                }
            }
            Task {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                if outcome.withLockedValue({ $0 == nil }) { exchange.cancel() }
                settle(false)
            }
        }
    }
}
