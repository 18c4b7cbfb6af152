import CacheStore
import HTTPCaching
import NIOCore

extension CachePipeline {
    /// Answers a request that follows a fetch from the body as it streams in (``LiveBody``),
    /// as ``serveStored(_:body:request:sink:cacheStatus:now:)`` would from the committed
    /// object: its conditions, its Range, the same header fields. Nil when the request needs
    /// what only the commit gives (a coding made from the stored body, several ranges), or
    /// when a purge since the fetch began covers the object: it then waits for the commit,
    /// which the purge drops (or marks stale), as it would have without streaming.
    func serveLive(
        _ live: LiveBody, request: ClientRequest, sink: any ResponseSink, cacheStatus: CacheStatus, now: Double
    ) async throws -> RequestOutcome? {
        let record = live.record
        guard !store.purged(record, since: live.purgeEpoch) else { return nil }
        var cacheStatus = cacheStatus
        if configuration.cache.debugKey { cacheStatus.key = request.key.description }
        let prepared = prepareStoredAnswer(record, inline: nil, request: request, cacheStatus: cacheStatus, now: now)
        guard case .primary? = prepared.representation?.source, let bytes = prepared.bytes else { return nil }
        var headers = prepared.headers
        let status: Int
        let lower: Int64
        let upper: Int64
        switch prepared.answer {
        case .whole:
            (status, lower, upper) = (record.response.status, 0, bytes.length - 1)
        case .range(let first, let last):
            (status, lower, upper) = (206, first, last)
            headers.replace(
                "Content-Range", with: ContentRange(first: first, last: last, completeLength: bytes.length).headerValue)
        case .multipart:
            return nil
        case .notAcceptable, .notModified, .preconditionFailed, .rangeNotSatisfiable:
            return try await sendWithoutBody(
                prepared.answer, representation: prepared.selected.headers, age: prepared.age, length: bytes.length,
                cacheStatus: cacheStatus, sink: sink)
        }
        let count = upper - lower + 1
        headers.replace("Content-Length", with: String(count))
        guard request.method != .head else {
            try await sink.sendResponse(status: status, headers: headers, body: nil)
            return RequestOutcome(status: status, bytes: 0, cacheStatus: cacheStatus)
        }
        // The first bytes before the head: a body that broke off meanwhile is not answered
        // from (the request waits for the leader's end and fetches alone) rather than cut.
        var next = await live.read(at: lower)
        if case .failed = next { return nil }
        try await sink.sendHead(status: status, headers: headers)
        var position = lower
        while position <= upper {
            let piece: ByteBuffer?
            switch next {
            case .bytes(let arrived):
                piece = arrived.getSlice(
                    at: arrived.readerIndex, length: Int(min(Int64(arrived.readableBytes), upper - position + 1)))
            case .stored(let index):
                // Committed already: its bytes were dropped from memory.
                piece = try store.readChunk(objectID: bytes.owner, index: index).flatMap {
                    bytes.part(of: $0, index: index, lower: position, upper: upper)
                }
            case .end, .failed:
                piece = nil
            }
            guard let piece, piece.readableBytes > 0 else {
                throw ConnectionAbort(reason: "the body being fetched for \(record.primaryKey) broke off")
            }
            try await sink.sendBody(piece)
            position += Int64(piece.readableBytes)
            if position <= upper { next = await live.read(at: position) }
        }
        await sink.finish()
        return RequestOutcome(status: status, bytes: Int(count), cacheStatus: cacheStatus)
    }
}
