import CacheStore
import CacheTransaction
import EdgeTelemetry
import HTTPCaching
import NIOCore
import NIOHPACK
import NIOHTTP1
import OutpostConfig

/// A response the hit path decided from the store alone, in the form its connection writes.
struct HitAnswer {
    /// How the head goes out.
    enum Head {
        /// A head for the HTTP/1.1 encoder (or for NIO's HTTP/2-to-HTTP/1 codec on a stream).
        case parts(HTTPResponseHead)
        /// The whole HTTP/1.1 head as bytes (a prepared head with this request's fields),
        /// written after ``PreparedResponse/head``.
        case serialised(ByteBuffer)
        /// An HTTP/2 header block, `:status` first, names lower-case (RFC 9113 §8.2), for a
        /// HEADERS frame written by ``HTTP2ConnectionHits``.
        case fields(HPACKHeaders)
    }

    /// The form a connection wants its answers in.
    enum Form {
        /// HTTP/1.1: the prepared serialised head where there is one.
        case http1
        /// An HTTP/2 stream channel behind NIO's HTTP/2-to-HTTP/1 codec.
        case http2Stream
        /// HTTP/2 frames written on the connection: only bodies in memory (one stored chunk) of
        /// at most ``HitAnswer/http2FrameBodyLimit`` bytes; longer ones stream from the store,
        /// chunk by chunk, on a stream channel with its back-pressure.
        case http2Frames
    }

    /// The longest body ``HTTP2ConnectionHits`` answers on the connection.
    static let http2FrameBodyLimit: Int64 = 1 << 20

    var head: Head
    var bytes: StoredBytes?
    var lower: Int64 = 0
    var upper: Int64 = -1
    var outcome: RequestOutcome
    var closes: Bool
    var method: String
    var url: String
    /// When the hit began (`NIODeadline.now()`), for the access log; nil when it is off. Not a
    /// `ContinuousClock.Instant?`: the standard library's type is resilient, so every copy of
    /// the answer copied it through its value witnesses (tools/bench-instructions).
    var started: NIODeadline?
}

/// What the hit path needs of a request, whichever protocol brought it.
struct HitRequest {
    var method: HTTPMethod
    /// The request target as sent (origin-form or absolute-form).
    var uri: String
    var headers: HeaderFields
    var version: HTTPVersion
    var keepAlive: Bool
    var peer: String?
}

extension LoopHitState {
    /// The answer to a request when the store alone can give it; nil sends it to the pipeline.
    /// The callers have checked what only their protocol can tell (framing, Upgrade); the
    /// decisions here are the pipeline's own functions (docs/performance.md).
    func answer(_ request: HitRequest, form: HitAnswer.Form) -> HitAnswer? {
        guard request.method == .GET || request.method == .HEAD, !registry.isDraining else { return nil }
        let started: NIODeadline? = accessLog.enabled ? .now() : nil
        let pipeline = self.pipeline.current
        let settings = self.settings(pipeline)
        let method = request.method.rawValue
        let requestMethod: RequestMethod = request.method == .GET ? .get : .head
        let headers = request.headers
        let uri = request.uri
        // Requests the checks would reject are the pipeline's to answer (and log).
        guard
            RequestValidation.check(
                method: method, uri: uri, versionMajor: 1, versionMinor: 1, headers: headers,
                limits: settings.limits, fieldsChecked: form == .http2Frames) == nil,
            let target = RequestTarget(uri: uri, host: headers["Host"])
        else { return nil }
        let key: CacheKey
        let url: String
        let route: OriginURL?
        if RequestValidation.isOriginForm(uri) {
            (key, url, route) = self.route(
                host: target.authority, pathAndQuery: target.pathAndQuery, pipeline: pipeline)
        } else {
            key = CacheKey(scheme: "http", authority: target.authority, pathAndQuery: target.pathAndQuery)
            url = key.description
            route = pipeline.configuration.upstream.origin(for: key)
        }
        guard let origin = route else { return nil }
        let directives = RequestDirectives(headers, honour: settings.honourRequestDirectives)
        guard !directives.noStore else { return nil }
        let lookup: StoreReadSession.Lookup
        do {
            lookup = try session.lookup(url, requestHeaders: headers)
        } catch {
            return nil  // the pipeline looks again, logs the failure and bypasses the store
        }
        // Stored parts (RFC 9111 §3.4) are the pipeline's.
        guard case .found(let record, let revision, let inline) = lookup, record.response.status != 206 else {
            return nil
        }
        let object = prepared(record, revision: revision, pipeline: pipeline)
        let now = pipeline.clock.now()
        let age = object.age(at: now)
        var cacheStatus = CacheStatus.hit(ttl: object.lifetime.remaining(atAge: age))
        let decision = pipeline.reuseDecision(
            record, cacheControl: object.cacheControl, lifetime: object.lifetime, age: age, directives: directives)
        switch decision {
        case .fresh: break
        case .staleAllowed(let reason): cacheStatus.detail = .staleAllowed(reason)
        case .staleWhileRevalidate: cacheStatus.detail = .staleWhileRevalidate
        case .mustValidate: return nil
        }
        if settings.debugKey { cacheStatus.key = url }
        // 406 and decoding on the fly are the pipeline's.
        guard let representation = object.representation(for: headers, now: now, pipeline: pipeline),
            let (prepared, preparedBytes) = object.head(for: representation, inline: inline, pipeline: pipeline)
        else { return nil }
        let ageValue = Age.headerValue(age)
        let cacheStatusValue = object.cacheStatusValue(cacheStatus)
        let keepAlive = request.keepAlive
        let strip = !settings.exposeSurrogateKeys
        // A head built from fields (not prepared): as the pipeline's sink builds it.
        func built(_ status: Int, _ fields: HeaderFields) -> (Head: HitAnswer.Head, closes: Bool) {
            let version = form == .http2Frames ? HTTPVersion(major: 2, minor: 0) : request.version
            let (head, closes) = ChannelResponseSink.head(
                status: status, headers: fields, version: version, keepAlive: keepAlive, stripSurrogateKeys: strip)
            if form == .http2Frames { return (.fields(HPACKHeaders(status: status, head.headers)), false) }
            return (.parts(head), closes)
        }

        var answer: HitAnswer
        let clientAnswer = ClientAnswer.decide(
            method: requestMethod, requestHeaders: headers, selected: prepared.selected,
            rangeLength: preparedBytes.length,
            maxRanges: settings.maxRanges)
        switch clientAnswer {
        case .notModified:
            let fields = pipeline.notModifiedHeaders(prepared.selected.headers, age: ageValue, cacheStatus: cacheStatus)
            let (head, closes) = built(304, fields)
            answer = HitAnswer(
                head: head, outcome: RequestOutcome(status: 304, bytes: 0, cacheStatus: cacheStatus),
                closes: closes, method: method, url: url, started: started)
        case .preconditionFailed, .notAcceptable, .multipart, .rangeNotSatisfiable:
            // Generated answers are the pipeline's.
            return nil
        case .whole, .range:
            let length = preparedBytes.length
            var status = record.response.status
            var lower: Int64 = 0
            var upper = length - 1
            let head: HitAnswer.Head
            var closes = !keepAlive
            if case .range(let first, let last) = clientAnswer {
                status = 206
                lower = first
                upper = last
            }
            if status == 206 {
                var fields = prepared.fields
                fields.add("Age", ageValue)
                fields.add("Cache-Status", cacheStatusValue)
                fields.replace(
                    "Content-Range", with: ContentRange(first: lower, last: upper, completeLength: length).headerValue)
                fields.replace("Content-Length", with: String(upper - lower + 1))
                (head, closes) = built(206, fields)
            } else {
                switch form {
                case .http1 where prepared.serialised != nil:
                    let prefix = prepared.serialised!
                    var bytes = allocator.buffer(capacity: prefix.readableBytes + 128)
                    bytes.writeImmutableBuffer(prefix)
                    bytes.writeStaticString("Age: ")
                    bytes.writeString(ageValue)
                    bytes.writeStaticString("\r\nCache-Status: ")
                    bytes.writeString(cacheStatusValue)
                    bytes.writeStaticString(keepAlive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
                    head = .serialised(bytes)
                case .http2Frames:
                    var fields = prepared.http2Fields
                    fields.add(name: "age", value: ageValue, indexing: .nonIndexable)
                    fields.add(name: "cache-status", value: cacheStatusValue, indexing: .indexable)
                    head = .fields(fields)
                case .http1, .http2Stream:
                    var headers = prepared.template
                    headers.add(name: "Age", value: ageValue)
                    headers.add(name: "Cache-Status", value: cacheStatusValue)
                    if !keepAlive && form == .http1 { headers.add(name: "Connection", value: "close") }
                    head = .parts(
                        HTTPResponseHead(
                            version: request.version, status: HTTPResponseStatus(statusCode: status), headers: headers))
                }
            }
            let count = max(0, upper - lower + 1)
            let sendsBody = requestMethod != .head && count > 0
            var bytes = preparedBytes
            if sendsBody, bytes.inline == nil, bytes.length <= bytes.chunkSize {
                // A one-chunk body the lookup did not read (a coding, or the identity body of an
                // object with codings): read and check it before anything is sent, so that a
                // missing or damaged chunk is the pipeline's to answer, never a cut response.
                guard let chunk = try? session.readChunk(objectID: bytes.owner, index: 0),
                    Int64(chunk.readableBytes) == bytes.length
                else { return nil }
                bytes.inline = chunk
            }
            if form == .http2Frames, sendsBody, bytes.inline == nil || count > HitAnswer.http2FrameBodyLimit {
                return nil
            }
            answer = HitAnswer(
                head: head, bytes: sendsBody ? bytes : nil, lower: lower, upper: upper,
                outcome: RequestOutcome(status: status, bytes: sendsBody ? Int(count) : 0, cacheStatus: cacheStatus),
                closes: closes, method: method, url: url, started: started)
        }
        // Committed to answering here: now the side effects.
        if case .staleWhileRevalidate = decision {
            // RFC 5861 §3: answer from the stale copy at once; refresh it behind the client.
            let request = ClientRequest(
                method: requestMethod, target: uri, pathAndQuery: target.pathAndQuery, headers: headers, key: key,
                origin: origin, clientAddress: request.peer, body: nil)
            pipeline.refreshInBackground(request, stale: record)
        }
        touch(record.id, at: now)
        return answer
    }

    /// Counts an answered request and writes its access-log entry.
    func record(_ answer: HitAnswer, peer: String?) {
        let outcome = answer.outcome
        if let started = answer.started {
            accessLog.record(
                method: answer.method, url: answer.url, status: outcome.status, bytes: outcome.bytes,
                seconds: Double((NIODeadline.now() - started).nanoseconds) / 1e9,
                cacheStatus: outcome.cacheStatus, peer: peer)
        }
        let result = CacheResult(outcome.cacheStatus)
        if !counters.record(status: outcome.status, bytes: outcome.bytes, result: result) {
            pipeline.current.telemetry.record(
                status: outcome.status, bytes: outcome.bytes, cacheStatus: outcome.cacheStatus)
        }
    }
}

extension HPACKHeaders {
    /// An HTTP/2 response header block: `:status`, then the fields lower-cased and without the
    /// connection-specific ones (RFC 9113 §8.2.2), as NIO's HTTP/2-to-HTTP/1 codec makes them.
    ///
    /// The fields are indexable (RFC 7541 §6.2.1): an object's fields are the same in every
    /// response, so after the first on a connection each is one index byte, where a literal
    /// costs NIO's encoder a Huffman coding of its value every time. The hit adds Cache-Status
    /// indexable too: it changes at most once a second, so the other responses of that second
    /// send it as one index byte, where a literal Huffman-codes its name and value (5 500
    /// instructions a hit, tools/bench-instructions --h2). Age is sent without indexing, its
    /// name indexed from the static table (RFC 7541 Appendix A): a one-to-four-digit literal
    /// is cheap, and an entry a second for it would lengthen every search of the dynamic table
    /// on a long-lived connection.
    init(status: Int, _ headers: HTTPHeaders) {
        self.init()
        reserveCapacity(headers.count + 3)
        add(name: ":status", value: String(status))
        add(contentsOf: HPACKHeaders(httpHeaders: headers, normalizeHTTPHeaders: true))
    }
}
