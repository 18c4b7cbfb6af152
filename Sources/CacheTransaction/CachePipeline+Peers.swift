import HTTPCaching
import OutpostConfig

/// A response the owner of a key gave (a struct: an optional tuple is looked up in the
/// runtime's tuple metadata cache on every call).
struct OwnerAnswer {
    var response: UpstreamResponse
    var owner: OriginURL
}

extension CachePipeline {
    /// A fetch of a key another peer owns goes to that peer, which fetches it once for the
    /// whole group (docs/fleet.md): the live peers ranked above this node are asked in order,
    /// the next only when the one before could not be reached. Returns the response and the
    /// peer that gave it; nil when this node owns the key, when the request came from a peer
    /// (it is never forwarded again), or when no owner could be reached — then this node
    /// fetches it itself.
    func askOwner(
        _ request: ClientRequest, plan: FetchPlan, sink: any ResponseSink
    ) async throws -> OwnerAnswer? {
        guard let peers else { return nil }
        if let from = request.headers[PeerSet.header], peers.isPeer(from) { return nil }
        let owners = peers.owners(of: request.key.description)
        guard !owners.isEmpty else { return nil }
        // An owner gets the client's Host, as a parent does: it keys the request alike.
        var toOwner = fetchHeaders(for: request, plan: plan, towards: owners[0])
        toOwner.replace(PeerSet.header, with: peers.selfURL.description)
        for owner in owners {
            do {
                let response = try await send(
                    request, to: owner, method: "GET", headers: toOwner, body: nil, sink: sink)
                peers.fetched(from: owner, unreachable: false, failed: response.status >= 500)
                return OwnerAnswer(response: response, owner: owner)
            } catch let error as ProxyError {
                let unreachable = Self.parentUnreachable(error)
                peers.fetched(from: owner, unreachable: unreachable, failed: true)
                // One that was reached but failed (a timeout after connecting) may have the
                // request in hand: asking another would double the load the group shields.
                guard unreachable else {
                    logger.warning(
                        "peer failed", metadata: ["url": "\(request.key)", "peer": "\(owner)", "error": "\(error)"])
                    throw error
                }
                logger.warning(
                    "peer unreachable: it is down until its health checks pass; asking the next owner",
                    metadata: ["url": "\(request.key)", "peer": "\(owner)", "error": "\(error)"])
            }
        }
        return nil
    }

    /// What this node keeps of a response a peer gave it: nothing with
    /// `cluster.local_copy_ttl = 0` (the owner's copy is the group's), else a copy fresh for
    /// that many seconds from now at most (``capLocalCopy(_:)``).
    func localCopy(of stored: inout StoredResponse) -> Bool {
        guard configuration.cluster.localCopyTTL > 0 else { return false }
        capLocalCopy(&stored)
        return true
    }

    /// Caps a local copy's lifetime at its age on arrival plus `cluster.local_copy_ttl`: the
    /// owner's copy may already be old (its Age), and the local one is to stay fresh for the
    /// configured time from when it came, whatever that age. A 304 from the owner sets it again.
    func capLocalCopy(_ stored: inout StoredResponse) {
        stored.lifetimeCap =
            Int64(Age.correctedInitialAge(of: stored).rounded(.down)) + Int64(configuration.cluster.localCopyTTL)
    }
}
