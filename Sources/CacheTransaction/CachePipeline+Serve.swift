import CacheStore
import ContentCoding
import HTTPCaching
import NIOCore
import OutpostConfig

extension CachePipeline {
    /// Answers from a stored response (RFC 9111 §4): the representation the client accepts
    /// (RFC 9110 §12.5.3), its own conditions and Range, the stored header fields with the
    /// current Age, and the body from storage.
    func serveStored(
        _ record: ObjectRecord, body inline: ByteBuffer?, request: ClientRequest, sink: any ResponseSink,
        cacheStatus: CacheStatus, now: Double
    ) async throws -> RequestOutcome {
        var cacheStatus = cacheStatus
        if configuration.cache.debugKey { cacheStatus.key = request.key.description }
        store.recordHit(objectID: record.id, at: now)
        if record.response.status == 206 {
            return try await serveStoredPart(
                record, body: inline, request: request, sink: sink, cacheStatus: cacheStatus, now: now)
        }

        let prepared = prepareStoredAnswer(record, inline: inline, request: request, cacheStatus: cacheStatus, now: now)
        let (representation, selected, bytes, answer, age) =
            (prepared.representation, prepared.selected, prepared.bytes, prepared.answer, prepared.age)
        if let representation {
            requestCodingIfWanted(record, representation: representation, requestHeaders: request.headers)
        }
        var headers = prepared.headers

        var status = record.response.status
        var lower: Int64 = 0
        var upper: Int64 = (bytes?.length ?? 0) - 1
        if let generated = try await sendWithoutBody(
            answer, representation: selected.headers, age: age, length: bytes?.length ?? 0, cacheStatus: cacheStatus,
            sink: sink)
        {
            return generated
        }
        switch answer {
        case .notAcceptable, .notModified, .preconditionFailed, .rangeNotSatisfiable:
            break  // sent above
        case .multipart(let ranges):
            guard let bytes else { throw ConnectionAbort(reason: "no stored bytes for \(record.primaryKey)") }
            return try await sendMultipart(
                bytes, ranges: ranges, contentType: record.response.headers["Content-Type"], headers: headers,
                sink: sink,
                cacheStatus: cacheStatus)
        case .range(let first, let last):
            status = 206
            lower = first
            upper = last
            headers.replace(
                "Content-Range",
                with: ContentRange(first: first, last: last, completeLength: bytes?.length ?? 0).headerValue)
        case .whole:
            if case .decoded(let coding)? = representation?.source {
                return try await sendDecoded(
                    record, from: coding, headers: headers, request: request, sink: sink, cacheStatus: cacheStatus)
            }
        }
        guard let bytes else { throw ConnectionAbort(reason: "no stored bytes for \(record.primaryKey)") }
        let count = max(0, upper - lower + 1)
        headers.replace("Content-Length", with: String(count))
        guard request.method != .head, count > 0 else {
            try await sink.sendResponse(status: status, headers: headers, body: nil)
            return RequestOutcome(status: status, bytes: 0, cacheStatus: cacheStatus)
        }
        if let inline = bytes.inline {
            // The common hit: the whole body came with the lookup; one write.
            let slice = try storedSlice(inline, lower: lower, count: count, of: record)
            try await sink.sendResponse(status: status, headers: headers, body: slice)
        } else if lower / bytes.chunkSize == upper / bytes.chunkSize {
            // Bytes from one chunk (a coding, or a record read without its body): head and
            // body still go out in one write.
            let index = Int(lower / bytes.chunkSize)
            guard let chunk = try store.readChunk(objectID: bytes.owner, index: index) else {
                throw ConnectionAbort(reason: "stored body \(bytes.owner) disappeared while being served")
            }
            let slice = try storedSlice(chunk, lower: lower - Int64(index) * bytes.chunkSize, count: count, of: record)
            try await sink.sendResponse(status: status, headers: headers, body: slice)
        } else {
            try await sink.sendHead(status: status, headers: headers)
            try await sendStoredChunks(bytes, lower: lower, upper: upper, sink: sink)
            await sink.finish()
        }
        return RequestOutcome(status: status, bytes: Int(count), cacheStatus: cacheStatus)
    }

    /// What a stored object gives a request, before any byte is sent.
    struct StoredAnswer {
        /// The representation the client accepts; nil for 406.
        var representation: Representation?
        /// The representation's own view of the response: its entity tag is what conditions
        /// and If-Range compare against.
        var selected: StoredResponse
        /// Its bytes, unless it is decoded while it is sent.
        var bytes: StoredBytes?
        var answer: ClientAnswer
        var age: String
        /// The response's header fields with Age, Via and Cache-Status (no length or range yet).
        var headers: HeaderFields
    }

    /// The representation a request gets from a stored object (RFC 9110 §12.5.3), the answer
    /// to its conditions and Range, and the header fields with its current Age.
    func prepareStoredAnswer(
        _ record: ObjectRecord, inline: ByteBuffer?, request: ClientRequest, cacheStatus: CacheStatus, now: Double
    ) -> StoredAnswer {
        let representation = Representation.choose(for: record, requestHeaders: request.headers)
        let selected = representation.map { representationView(record, $0) } ?? record.response
        let bytes = representation.flatMap { StoredBytes(record, $0, inline: inline) }
        let answer = ClientAnswer.decide(
            method: request.method, requestHeaders: request.headers, selected: selected,
            acceptable: representation != nil, rangeLength: bytes?.length, maxRanges: configuration.server.maxRanges)
        let age = Age.headerValue(Age.current(of: record.response, now: now))
        var headers = selected.headers
        headers.replace("Age", with: age)
        ResponseHeaders.stamp(&headers, via: via, cacheStatus: cacheStatus)
        if record.response.status == 200, bytes != nil { headers.replace("Accept-Ranges", with: "bytes") }
        return StoredAnswer(
            representation: representation, selected: selected, bytes: bytes, answer: answer, age: age,
            headers: headers)
    }

    /// Asks for br and gzip of a compressible identity object when this request would have
    /// taken one of them: a hit never compresses, it is answered with identity meanwhile.
    func requestCodingIfWanted(_ record: ObjectRecord, representation: Representation, requestHeaders: HeaderFields) {
        guard
            Representation.wantsCoding(
                representation, requestHeaders: requestHeaders,
                mayBeCoded: Representation.mayBeCoded(record, compression: configuration.compression))
        else { return }
        backgroundCoding.request(record.id, compression: configuration.compression)
    }

    /// The header fields of a representation and its view of the stored response: its own
    /// entity tag and coding, which conditions and If-Range compare against.
    package func representationView(_ record: ObjectRecord, _ representation: Representation) -> StoredResponse {
        Self.representationView(record, representation, compression: configuration.compression)
    }

    /// ``representationView(_:_:)`` from the compression settings alone.
    package static func representationView(
        _ record: ObjectRecord, _ representation: Representation, compression: OutpostConfiguration.Compression
    ) -> StoredResponse {
        StoredResponse(
            status: record.response.status,
            headers: representation.headers(
                from: record.response.headers, varies: Representation.variesByCoding(record, compression: compression)),
            requestTime: record.response.requestTime, responseTime: record.response.responseTime)
    }

    /// RFC 9111 §4.3.2: a 304 to the client's conditional, from the header fields of the
    /// representation it selects (with its current Age when it comes from storage).
    package func notModifiedHeaders(
        _ representation: HeaderFields, age: String?, cacheStatus: CacheStatus
    )
        -> HeaderFields
    {
        var notModified = Conditional.notModifiedHeaders(from: representation)
        if let age { notModified.add("Age", age) }
        ResponseHeaders.stamp(&notModified, via: via, cacheStatus: cacheStatus)
        return notModified
    }

    /// Sends the answers a cache generates instead of the representation: 406 (RFC 9110
    /// §15.5.7), 304 (§15.4.5), 412 (§15.5.13) and 416 with the representation's `length`
    /// (§15.5.17). Nil for the answers that send its bytes, which are the caller's to send:
    /// from storage, or from a body still streaming in.
    func sendWithoutBody(
        _ answer: ClientAnswer, representation: HeaderFields, age: String?, length: Int64, cacheStatus: CacheStatus,
        sink: any ResponseSink
    ) async throws -> RequestOutcome? {
        switch answer {
        case .whole, .range, .multipart:
            return nil
        case .notAcceptable:
            return try await sendError(
                status: 406, message: "no acceptable content coding", sink: sink, cacheStatus: cacheStatus,
                proxyError: nil)
        case .notModified:
            let notModified = notModifiedHeaders(representation, age: age, cacheStatus: cacheStatus)
            try await sink.sendResponse(status: 304, headers: notModified, body: nil)
            return RequestOutcome(status: 304, bytes: 0, cacheStatus: cacheStatus)
        case .preconditionFailed:
            return try await sendError(
                status: 412, message: "precondition failed", sink: sink, cacheStatus: cacheStatus, proxyError: nil)
        case .rangeNotSatisfiable:
            return try await sendRangeNotSatisfiable(length: length, sink: sink, cacheStatus: cacheStatus)
        }
    }

    /// RFC 9111 §3.4: a range inside a stored 206 part, cut from the part's bytes.
    private func serveStoredPart(
        _ record: ObjectRecord, body inline: ByteBuffer?, request: ClientRequest, sink: any ResponseSink,
        cacheStatus: CacheStatus, now: Double
    ) async throws -> RequestOutcome {
        guard let wanted = storedPart(of: record, covers: request),
            let part = record.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:))
        else {
            throw ConnectionAbort(reason: "stored part of \(record.primaryKey) no longer covers the request")
        }
        var headers = record.response.headers
        headers.replace("Age", with: Age.headerValue(Age.current(of: record.response, now: now)))
        ResponseHeaders.stamp(&headers, via: via, cacheStatus: cacheStatus)
        headers.replace(
            "Content-Range",
            with: ContentRange(first: wanted.lowerBound, last: wanted.upperBound, completeLength: part.completeLength)
                .headerValue)
        let count = wanted.upperBound - wanted.lowerBound + 1
        headers.replace("Content-Length", with: String(count))
        let bytes = StoredBytes(primaryOf: record, inline: inline)
        let lower = wanted.lowerBound - part.first
        if let inline = bytes.inline {
            let slice = try storedSlice(inline, lower: lower, count: count, of: record)
            try await sink.sendResponse(status: 206, headers: headers, body: slice)
        } else {
            try await sink.sendHead(status: 206, headers: headers)
            try await sendStoredChunks(bytes, lower: lower, upper: lower + count - 1, sink: sink)
            await sink.finish()
        }
        return RequestOutcome(status: 206, bytes: Int(count), cacheStatus: cacheStatus)
    }

    /// Bytes `lower..<lower+count` of a body that came inline with its record; a record whose
    /// body is shorter than it claims aborts the response rather than the process.
    private func storedSlice(
        _ inline: ByteBuffer, lower: Int64, count: Int64, of record: ObjectRecord
    ) throws
        -> ByteBuffer
    {
        guard let slice = inline.getSlice(at: inline.readerIndex + Int(lower), length: Int(count)) else {
            throw ConnectionAbort(reason: "stored body of \(record.primaryKey) is shorter than its record says")
        }
        return slice
    }

    /// RFC 9110 §14.6: several ranges as one multipart/byteranges 206, each part cut from the
    /// stored bytes (inline or chunk by chunk).
    private func sendMultipart(
        _ bytes: StoredBytes, ranges: [ClosedRange<Int64>], contentType: String?, headers: HeaderFields,
        sink: any ResponseSink, cacheStatus: CacheStatus
    ) async throws -> RequestOutcome {
        let boundary = "outpost-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let multipart = MultipartByteranges(
            ranges: ranges.map { (lower: $0.lowerBound, upper: $0.upperBound) }, length: bytes.length,
            contentType: contentType, boundary: boundary)
        var headers = headers
        headers.remove("Content-Range")
        headers.replace("Content-Type", with: multipart.contentType)
        headers.replace("Content-Length", with: String(multipart.contentLength))
        try await sink.sendHead(status: 206, headers: headers)
        for part in multipart.parts {
            try await sink.sendBody(part.header)
            if let inline = bytes.inline {
                guard
                    let slice = inline.getSlice(
                        at: inline.readerIndex + Int(part.lower), length: Int(part.upper - part.lower + 1))
                else { throw ConnectionAbort(reason: "a stored body is shorter than its record says") }
                try await sink.sendBody(slice)
            } else {
                try await sendStoredChunks(bytes, lower: part.lower, upper: part.upper, sink: sink)
            }
        }
        try await sink.sendBody(multipart.trailer)
        await sink.finish()
        return RequestOutcome(status: 206, bytes: Int(multipart.contentLength), cacheStatus: cacheStatus)
    }

    /// A body stored in a coding the client does not accept, decoded while it is sent
    /// (chunked; a Range is not applied to bytes that are not stored), with the decoded size
    /// capped by `compression.max_decoded_size`.
    private func sendDecoded(
        _ record: ObjectRecord, from coding: String, headers: HeaderFields, request: ClientRequest,
        sink: any ResponseSink, cacheStatus: CacheStatus
    ) async throws -> RequestOutcome {
        let status = record.response.status
        guard request.method != .head else {
            try await sink.sendResponse(status: status, headers: headers, body: nil)
            return RequestOutcome(status: status, bytes: 0, cacheStatus: cacheStatus)
        }
        guard let decoder = try Coders.decoder(for: coding, outputLimit: configuration.compression.maxDecodedSize)
        else {
            throw ConnectionAbort(reason: "no decoder for \(coding)")
        }
        let bytes = StoredBytes(primaryOf: record)
        try await sink.sendHead(status: status, headers: headers)
        var sent = 0
        do {
            try await forEachStoredChunk(bytes, lower: 0, upper: bytes.length - 1) { chunk in
                let decoded = try decoder.process(chunk)
                sent += decoded.readableBytes
                if decoded.readableBytes > 0 { try await sink.sendBody(decoded) }
            }
            let last = try decoder.finish()
            if last.readableBytes > 0 { try await sink.sendBody(last) }
        } catch let error as CodingError {
            logger.warning("decoding a stored body failed", metadata: ["url": "\(request.key)", "error": "\(error)"])
            throw ConnectionAbort(reason: "decoding failed: \(error)")
        }
        await sink.finish()
        return RequestOutcome(status: status, bytes: sent, cacheStatus: cacheStatus)
    }

    /// Streams bytes `lower...upper` of stored bytes chunk by chunk.
    private func sendStoredChunks(
        _ bytes: StoredBytes, lower: Int64, upper: Int64, sink: any ResponseSink
    ) async throws {
        try await forEachStoredChunk(bytes, lower: lower, upper: upper) { try await sink.sendBody($0) }
    }

    /// Hands bytes `lower...upper` to `body` chunk by chunk, each chunk read in its own short
    /// read transaction (never one held across an await).
    func forEachStoredChunk(
        _ bytes: StoredBytes, lower: Int64, upper: Int64, _ body: (ByteBuffer) async throws -> Void
    ) async throws {
        var index = Int(lower / bytes.chunkSize)
        while Int64(index) * bytes.chunkSize <= upper {
            guard let chunk = try store.readChunk(objectID: bytes.owner, index: index) else {
                // Evicted or replaced while we were sending it: the client must see a cut.
                throw ConnectionAbort(reason: "stored body \(bytes.owner) disappeared while being served")
            }
            guard let slice = bytes.part(of: chunk, index: index, lower: lower, upper: upper) else {
                throw ConnectionAbort(reason: "stored body \(bytes.owner) is shorter than its record says")
            }
            try await body(slice)
            index += 1
        }
    }

    /// RFC 9110 §15.5.17: 416 with the representation's length in `Content-Range: bytes */N`.
    func sendRangeNotSatisfiable(
        length: Int64, sink: any ResponseSink, cacheStatus: CacheStatus
    ) async throws
        -> RequestOutcome
    {
        var rejection = HeaderFields()
        rejection.add("Content-Range", "bytes */\(length)")
        rejection.add("Date", HTTPDate.format(Int64(clock.now())))
        ResponseHeaders.stamp(&rejection, via: via, cacheStatus: cacheStatus)
        rejection.add("Content-Length", "0")
        try await sink.sendResponse(status: 416, headers: rejection, body: nil)
        return RequestOutcome(status: 416, bytes: 0, cacheStatus: cacheStatus)
    }

    /// An error response generated by Outpost itself.
    package func sendError(
        status: Int, message: String, sink: any ResponseSink, cacheStatus: CacheStatus, proxyError: ProxyError?
    ) async throws -> RequestOutcome {
        var headers = HeaderFields()
        let body = message + "\n"
        headers.add("Content-Type", "text/plain; charset=utf-8")
        headers.add("Content-Length", String(body.utf8.count))
        headers.add("Date", HTTPDate.format(Int64(clock.now())))
        headers.add("Cache-Control", "no-store")
        ResponseHeaders.stamp(&headers, via: via, cacheStatus: cacheStatus)
        if let proxyError { headers.add("Proxy-Status", proxyError.headerValue(proxyName: via)) }
        try await sink.sendResponse(status: status, headers: headers, body: ByteBuffer(string: body))
        return RequestOutcome(status: status, bytes: body.utf8.count, cacheStatus: cacheStatus)
    }
}
