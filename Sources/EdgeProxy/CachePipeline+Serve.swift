import CacheStore
import ContentCoding
import HTTPCaching
import NIOCore

extension CachePipeline {
    /// Answers from a stored response (RFC 9111 §4): the client's own conditions and Range
    /// first, then the stored header fields with the current Age, and the body from storage.
    func serveStored(
        _ record: ObjectRecord, body inline: ByteBuffer?, request: ClientRequest, sink: some ResponseSink,
        cacheStatus: CacheStatus, now: Double
    ) async throws -> RequestOutcome {
        let stored = record.response
        var cacheStatus = cacheStatus
        if configuration.cache.debugKey { cacheStatus.key = request.key.description }
        store.recordHit(objectID: record.id, at: now)

        var headers = stored.headers
        headers.replace("Age", with: Age.headerValue(Age.current(of: stored, now: now)))
        headers.add("Via", "1.1 \(via)")
        headers.add("Cache-Status", cacheStatus.headerValue)

        // RFC 9110 §13.2.2: preconditions are evaluated against the stored response.
        switch Conditional.evaluate(method: request.method, requestHeaders: request.headers, stored: stored) {
        case .notModified:
            var notModified = Conditional.notModifiedHeaders(from: stored.headers)
            notModified.add("Age", Age.headerValue(Age.current(of: stored, now: now)))
            notModified.add("Via", "1.1 \(via)")
            notModified.add("Cache-Status", cacheStatus.headerValue)
            try await sink.sendResponse(status: 304, headers: notModified, body: nil)
            return RequestOutcome(status: 304, bytes: 0, cacheStatus: cacheStatus)
        case .preconditionFailed:
            return try await sendError(
                status: 412, message: "precondition failed", sink: sink, cacheStatus: cacheStatus, proxyError: nil)
        case .proceed:
            break
        }

        let length = Int64(record.bodyLength)
        var lower: Int64 = 0
        var upper: Int64 = length - 1
        var status = stored.status
        if stored.status == 200 {
            headers.replace("Accept-Ranges", with: "bytes")
            if request.method == "GET", let rangeValue = request.headers["Range"], let spec = ByteRangeSpec(rangeValue),
                ifRangeAllows(request.headers, stored: stored)
            {
                switch spec.resolveAll(length: length, maxRanges: configuration.server.maxRanges) {
                case .multiple(let ranges):
                    return try await sendMultipart(
                        record, inline: inline, ranges: ranges, headers: headers, sink: sink, cacheStatus: cacheStatus)
                case .single(let first, let last):
                    status = 206
                    lower = first
                    upper = last
                    headers.replace("Content-Range", with: "bytes \(first)-\(last)/\(length)")
                case .unsatisfiable:
                    var rejection = HeaderFields()
                    rejection.add("Content-Range", "bytes */\(length)")
                    rejection.add("Date", HTTPDate.format(Int64(now)))
                    rejection.add("Via", "1.1 \(via)")
                    rejection.add("Cache-Status", cacheStatus.headerValue)
                    rejection.add("Content-Length", "0")
                    try await sink.sendResponse(status: 416, headers: rejection, body: nil)
                    return RequestOutcome(status: 416, bytes: 0, cacheStatus: cacheStatus)
                case .whole:
                    break
                }
            }
        }
        let count = max(0, upper - lower + 1)
        headers.replace("Content-Length", with: String(count))
        guard request.method != "HEAD", count > 0 else {
            try await sink.sendResponse(status: status, headers: headers, body: nil)
            return RequestOutcome(status: status, bytes: 0, cacheStatus: cacheStatus)
        }
        if let inline {
            // The common hit: the whole body came with the lookup; one write.
            let slice = inline.getSlice(at: inline.readerIndex + Int(lower), length: Int(count))!
            try await sink.sendResponse(status: status, headers: headers, body: slice)
        } else {
            try await sink.sendHead(status: status, headers: headers)
            try await sendStoredChunks(record, lower: lower, upper: upper, sink: sink)
            try await sink.sendEnd()
        }
        return RequestOutcome(status: status, bytes: Int(count), cacheStatus: cacheStatus)
    }

    /// RFC 9110 §14.6: several ranges as one multipart/byteranges 206, each part cut from the
    /// stored body (inline or chunk by chunk).
    private func sendMultipart(
        _ record: ObjectRecord, inline: ByteBuffer?, ranges: [(lower: Int64, upper: Int64)], headers: HeaderFields,
        sink: some ResponseSink, cacheStatus: CacheStatus
    ) async throws -> RequestOutcome {
        let length = Int64(record.bodyLength)
        let boundary = "outpost-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let multipart = MultipartByteranges(
            ranges: ranges, length: length, contentType: record.response.headers["Content-Type"], boundary: boundary)
        var headers = headers
        headers.remove("Content-Range")
        headers.replace("Content-Type", with: multipart.contentType)
        headers.replace("Content-Length", with: String(multipart.contentLength))
        try await sink.sendHead(status: 206, headers: headers)
        for part in multipart.parts {
            try await sink.sendBody(part.header)
            if let inline {
                let count = Int(part.upper - part.lower + 1)
                try await sink.sendBody(inline.getSlice(at: inline.readerIndex + Int(part.lower), length: count)!)
            } else {
                try await sendStoredChunks(record, lower: part.lower, upper: part.upper, sink: sink)
            }
        }
        try await sink.sendBody(multipart.trailer)
        try await sink.sendEnd()
        return RequestOutcome(status: 206, bytes: Int(multipart.contentLength), cacheStatus: cacheStatus)
    }

    /// RFC 9110 §13.1.5: a Range applies only while If-Range still matches (strong entity tag
    /// comparison, or a date equal to a strong Last-Modified).
    private func ifRangeAllows(_ headers: HeaderFields, stored: StoredResponse) -> Bool {
        guard let value = headers["If-Range"] else { return true }
        if let tag = EntityTag(parsing: value) {
            guard let storedTag = stored.entityTag else { return false }
            return tag.strongMatches(storedTag)
        }
        guard let date = HTTPDate.parse(value), let lastModified = stored.lastModified else { return false }
        return date == lastModified
    }

    /// Streams bytes `lower...upper` of a stored body chunk by chunk, each read in its own short
    /// read transaction (never one held across an await).
    private func sendStoredChunks(
        _ record: ObjectRecord, lower: Int64, upper: Int64, sink: some ResponseSink
    ) async throws {
        let chunkSize = Int64(record.chunkSize)
        var index = Int(lower / chunkSize)
        var position = Int64(index) * chunkSize
        while position <= upper {
            guard let chunk = try store.readChunk(objectID: record.id, index: index) else {
                // Evicted or replaced while we were sending it: the client must see a cut.
                throw ConnectionAbort(reason: "stored object \(record.id) disappeared while being served")
            }
            let start = max(lower, position) - position
            let end = min(upper, position + Int64(chunk.readableBytes) - 1) - position
            guard end >= start,
                let slice = chunk.getSlice(at: chunk.readerIndex + Int(start), length: Int(end - start + 1))
            else {
                throw ConnectionAbort(reason: "stored object \(record.id) is shorter than its record says")
            }
            try await sink.sendBody(slice)
            position += Int64(chunk.readableBytes)
            index += 1
        }
    }

    /// An error response generated by Outpost itself.
    func sendError(
        status: Int, message: String, sink: some ResponseSink, cacheStatus: CacheStatus, proxyError: ProxyError?
    ) async throws -> RequestOutcome {
        var headers = HeaderFields()
        let body = message + "\n"
        headers.add("Content-Type", "text/plain; charset=utf-8")
        headers.add("Content-Length", String(body.utf8.count))
        headers.add("Date", HTTPDate.format(Int64(clock.now())))
        headers.add("Cache-Control", "no-store")
        headers.add("Via", "1.1 \(via)")
        headers.add("Cache-Status", cacheStatus.headerValue)
        if let proxyError { headers.add("Proxy-Status", proxyError.headerValue(proxyName: via)) }
        try await sink.sendResponse(status: status, headers: headers, body: ByteBuffer(string: body))
        return RequestOutcome(status: status, bytes: body.utf8.count, cacheStatus: cacheStatus)
    }
}
