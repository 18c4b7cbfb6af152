import CacheStore
import ContentCoding
import HTTPCaching
import NIOCore

/// Everything `outpost serve` can be told, with the defaults an operator gets when a key is
/// absent. Each property is one key of conf/outpost.toml (documented in docs/configuration.md).
public struct OutpostConfiguration: Sendable, Equatable {
    public struct Server: Sendable, Equatable {
        /// `server.listen`: address of the traffic listener.
        public var listen = SocketAddressSpec(host: "127.0.0.1", port: 8080)
        /// `server.idle_timeout`: seconds a keep-alive connection may sit idle between requests.
        public var idleTimeout: Double = 60
        /// `server.request_header_timeout`: seconds allowed from the first byte of a request
        /// to the end of its header section (defeats slow-header clients).
        public var requestHeaderTimeout: Double = 10
        /// `server.max_connections`: open client connections on the traffic listener; past it
        /// new ones get 503 and a close. Nil: half the open-file limit (at least 64).
        public var maxConnections: Int?
        /// `server.request_body_timeout`: seconds a client may take to send more of a request
        /// body each time the server reads (not while the server is not reading); 0: none.
        public var requestBodyTimeout: Double = 30
        /// `server.max_header_bytes`: bytes of header fields per request; beyond → 431.
        public var maxHeaderBytes = 32 * 1024
        /// `server.max_headers`: header fields per request; beyond → 431.
        public var maxHeaders = 100
        /// `server.max_uri_length`: bytes of request target; beyond → 414.
        public var maxURILength = 8 * 1024
        /// `server.max_request_body_size`: bytes of request body forwarded; beyond → 413.
        public var maxRequestBodySize = 100 * 1024 * 1024
        /// `server.max_ranges`: ranges served as multipart/byteranges in one response; more
        /// (or overlapping ones) get the whole representation as a 200.
        public var maxRanges = 16
        /// `server.event_loops`: threads that serve connections (one event loop each); 0: one per
        /// CPU the process may run on (its CPU affinity, within a cgroup CPU quota).
        public var eventLoops = 0
        /// `server.shutdown_grace`: seconds in-flight requests get to finish on SIGTERM.
        public var shutdownGrace: Double = 30
        /// `server.preserve_host`: send the client's Host upstream (else the origin's authority).
        public var preserveHost = true
        /// `server.via_pseudonym`: the name this hop uses in Via (RFC 9110 §7.6.3).
        public var viaPseudonym = "outpost"
        /// `server.tls_listen`: address of the TLS listener (docs/tls.md); nil: none.
        public var tlsListen: SocketAddressSpec?
        /// `[[server.certificates]]`: the TLS listener's certificates, chosen by SNI; the
        /// first is the default.
        public var certificates: [CertificateFiles] = []
    }

    public struct Upstream: Sendable, Equatable {
        /// `upstream.default`: the origin for requests whose Host has no entry of its own.
        public var defaultOrigin: OriginURL?
        /// `[upstream.hosts]`: Host → origin.
        public var hosts: [String: OriginURL] = [:]
        /// `upstream.parent`: the Outpost (shield) that misses and revalidations go to instead
        /// of the origin, with the client's Host (docs/fleet.md); none by default.
        public var parent: OriginURL?
        /// `[upstream.hosts]` entries written as `{ origin = "…", parent = "…" }`: Host → parent,
        /// before `upstream.parent`.
        public var hostParents: [String: OriginURL] = [:]
        /// `upstream.parent_fallback`: a fetch whose parent cannot be reached (refused, timed
        /// out connecting, unknown name) goes to the origin instead, and says so.
        public var parentFallback = true
        /// `upstream.connect_timeout`: seconds to establish a connection.
        public var connectTimeout: Double = 5
        /// `upstream.response_timeout`: seconds to wait for the response head → 504.
        public var responseTimeout: Double = 30
        /// `upstream.read_timeout`: seconds of silence tolerated while reading a body.
        public var readTimeout: Double = 30
        /// `upstream.max_connections_per_origin`: pooled HTTP/1.1 connections per origin.
        public var maxConnectionsPerOrigin = 128
        /// `upstream.max_queued_requests`: requests that may wait for a connection to one origin
        /// while all its connections are busy; past it → 503 `connection_limit_reached`.
        public var maxQueuedRequests = 1024
        /// `upstream.tls_ca_file`: PEM certificates trusted for `https` origins besides the
        /// system's roots (an origin with a private CA); none by default.
        public var tlsCAFile: String? = nil
    }

    public struct Cache: Sendable, Equatable {
        /// `cache.uncacheable_ttl`: seconds a URL whose response could not be stored skips
        /// request coalescing (hit-for-miss), so requests are not serialised behind it.
        public var uncacheableTTL: Double = 30
        /// `cache.heuristic_fraction`: share of (Date − Last-Modified) used as a heuristic lifetime.
        public var heuristicFraction = 0.1
        /// `cache.heuristic_max`: cap on a heuristic lifetime in seconds (always below 24 h).
        public var heuristicMax: Int64 = 86_399
        /// `cache.honour_request_directives`: obey clients' Cache-Control / Pragma.
        public var honourRequestDirectives = true
        /// `cache.set_cookie`: what is done with a response carrying Set-Cookie: `pass` (not
        /// stored), `strip` (stored without the field) or `store` (stored with it, replayed).
        /// `pass` by default (docs/configuration.md says why).
        public var setCookie = SetCookiePolicy.pass
        /// `cache.range_fetch_max_size`: a Range request on a miss fetches the whole object (to
        /// store it) when it is at most this large; larger objects get the range forwarded.
        /// 0 forwards every range as sent (and keeps the 206 as a stored part).
        public var rangeFetchMaxSize = 64 * 1024 * 1024
        /// `cache.debug_key`: add `key=` to Cache-Status.
        public var debugKey = false
        /// `cache.targeted_field`: the operator's own targeted cache-control field (RFC 9213),
        /// obeyed before CDN-Cache-Control and Cache-Control; empty disables it.
        public var targetedField = "Outpost-Cache-Control"
        /// `cache.default_ttl`: lifetime in seconds for heuristically cacheable responses with
        /// no freshness information and no Last-Modified; 0 is off.
        public var defaultTTL: Int64 = 0
        /// `cache.stale_if_error`: seconds past expiry a stale response may be served when the
        /// origin fails, for responses that do not say so themselves; 0 is off. One day by
        /// default (docs/configuration.md says why).
        public var staleIfError: Int64 = 86_400
        /// `cache.expose_surrogate_keys`: send the origin's Surrogate-Key and Cache-Tag fields
        /// on to clients (they are instructions to this cache, removed by default).
        public var exposeSurrogateKeys = false
    }

    public struct Compression: Sendable, Equatable {
        /// `compression.enabled`: store br and gzip codings of compressible responses.
        public var enabled = true
        /// `compression.types`: media types worth compressing (`text/*` style patterns).
        public var types = CompressibleTypes.defaultPatterns {
            didSet { compressibleTypes = CompressibleTypes(patterns: types) }
        }
        /// `compression.min_size`: smaller bodies are stored and sent as they are.
        public var minSize = 1024
        /// `compression.brotli_quality`: 0 (fastest) to 11 (smallest).
        public var brotliQuality = 5
        /// `compression.gzip_level`: 1 (fastest) to 9 (smallest).
        public var gzipLevel = 6
        /// `compression.max_decoded_size`: cap on bytes produced when decoding a coded body for
        /// a client that does not accept its coding (a decompression-bomb guard).
        public var maxDecodedSize = 256 * 1024 * 1024
        /// `compression.max_pending_codings`: objects waiting to be coded in the background;
        /// past it a demand is dropped (and asked again by a later request).
        public var maxPendingCodings = 256

        /// `types`, parsed once (every miss asks whether its type is compressible).
        package private(set) var compressibleTypes = CompressibleTypes(patterns: CompressibleTypes.defaultPatterns)
    }

    public struct Admin: Sendable, Equatable {
        /// `admin.listen`: address of the admin listener (loopback by default). A non-loopback
        /// address is refused unless a token is configured.
        public var listen = SocketAddressSpec(host: "127.0.0.1", port: 8090)
        /// `admin.token_file`: a file holding the bearer token the admin API requires
        /// (`OUTPOST_ADMIN_TOKEN` in the environment takes precedence).
        public var tokenFile: String?
        /// `admin.max_body_size`: bytes of request body an admin request may carry; beyond → 413.
        public var maxBodySize = 64 * 1024
        /// The token in force, resolved from the environment or `token_file` (see
        /// ``AdminToken``); not a configuration key of its own.
        public var token: String?
    }

    public struct Log: Sendable, Equatable {
        /// `log.level`: trace, debug, info, notice, warning, error, critical.
        public var level = "info"
        /// `log.access`: one line per request.
        public var access = true
        /// `log.format`: the access log's lines as text or as one JSON object each.
        public var format = LogFormat.text
    }

    /// `[http2]`: HTTP/2 to clients on the TLS listener (docs/tls.md). Each limit is what
    /// this side advertises or enforces; the flood limits close the connection past them.
    public struct HTTP2: Sendable, Equatable {
        /// `http2.enabled`: offer `h2` in ALPN.
        public var enabled = true
        /// `http2.max_concurrent_streams`: SETTINGS_MAX_CONCURRENT_STREAMS.
        public var maxConcurrentStreams = 100
        /// `http2.max_header_list_size`: SETTINGS_MAX_HEADER_LIST_SIZE, bytes of a decoded
        /// header list (the request's fields are also held to `server.max_header_bytes`).
        public var maxHeaderListSize = 32 * 1024
        /// `http2.header_table_size`: SETTINGS_HEADER_TABLE_SIZE, the HPACK table the client
        /// may make this side keep, bytes.
        public var headerTableSize = 4096
        /// `http2.max_frame_size`: SETTINGS_MAX_FRAME_SIZE, the largest frame payload this
        /// side accepts (16 KiB to 16 MiB - 1).
        public var maxFrameSize = 16384
        /// `http2.initial_window_size`: each stream's receive window (request bodies).
        public var initialWindowSize = 65535
        /// `http2.connection_window_size`: the connection's receive window.
        public var connectionWindowSize = 1 << 20
        /// `http2.max_resets` per `http2.reset_window` seconds: streams the client may reset
        /// (rapid reset, CVE-2023-44487).
        public var maxResets = 200
        public var resetWindow = 30.0
        /// `http2.max_control_frames` per `http2.control_window` seconds: PING, SETTINGS,
        /// PRIORITY frames (ping and settings floods).
        public var maxControlFrames = 200
        public var controlWindow = 30.0
        /// `http2.max_continuation_frames`: CONTINUATION frames after one HEADERS (the
        /// CONTINUATION flood).
        public var maxContinuationFrames = 5
        /// `http2.max_glitches`: protocol oddities (empty frames, frames on closed streams, …)
        /// tolerated before the connection is closed.
        public var maxGlitches = 200
        /// `http2.stall_timeout`: seconds a stream may wait with a response to send while the
        /// client's flow-control window stays shut; then it is reset (zero-window stalls).
        public var stallTimeout = 30.0
    }

    public var server = Server()
    public var http2 = HTTP2()
    public var upstream = Upstream()
    public var cache = Cache()
    public var store = StoreConfiguration(path: "./outpost-store")
    public var compression = Compression()
    public var admin = Admin()
    public var log = Log()
    public var cluster = Cluster()

    public struct Cluster: Sendable, Equatable {
        /// `cluster.name`: this fleet's identifier in CDN-Loop (RFC 8586). A request that left
        /// the fleet and came back, or that this node itself forwarded, carries it: 508.
        public var name = "outpost"
        /// `cluster.self`: this node's own traffic URL as its peers reach it (one of
        /// `peers`; added to them when left out). Required with `peers`.
        public var selfURL: OriginURL?
        /// `cluster.peers`: the nodes that share one copy of each object by consistent
        /// hashing (docs/fleet.md). Empty: no peers.
        public var peers: [OriginURL] = []
        /// `cluster.health_interval`: seconds between health checks of each peer.
        public var healthInterval = 2.0
        /// `cluster.health_timeout`: seconds a health check may take before it counts as failed.
        public var healthTimeout = 2.0
        /// `cluster.health_fall`: consecutive failed checks that mark a live peer down.
        public var healthFall = 3
        /// `cluster.health_rise`: consecutive good checks that bring a down peer back.
        public var healthRise = 2
        /// `cluster.local_copy_ttl`: seconds a node keeps its own copy of an object it fetched
        /// from the peer that owns it (its freshness capped to this); 0 keeps none.
        public var localCopyTTL = 0.0
        /// `cluster.purge_journal`: the PostgreSQL database (`postgres://user:password@host:port/db`)
        /// that carries every purge to every node (docs/fleet.md); nil: purges stay local.
        public var purgeJournal: JournalLocation?
        /// `cluster.journal_retention`: seconds a journaled purge is kept when some known node
        /// has not applied it (a node not seen for that long is forgotten).
        public var journalRetention = 604_800.0
        /// `cluster.journal_timeout`: seconds to connect to the journal, or to append a purge
        /// and apply it, before giving up (the purge is then applied locally).
        public var journalTimeout = 5.0
        /// `cluster.journal_poll_interval`: seconds between catch-ups that do not wait for a
        /// notification (and between the node's heartbeats and trims).
        public var journalPollInterval = 30.0
        /// `cluster.journal_reconnect_max`: the longest wait between attempts to reconnect.
        public var journalReconnectMax = 10.0

        public init() {}

        /// Every node of the peer group, this one included, in the order configured.
        public var members: [OriginURL] {
            guard let selfURL, !peers.isEmpty else { return [] }
            return peers.contains(selfURL) ? peers : peers + [selfURL]
        }
    }

    public init() {}

    package var freshness: FreshnessConfiguration {
        FreshnessConfiguration(
            heuristicFraction: cache.heuristicFraction, heuristicCap: cache.heuristicMax, defaultTTL: cache.defaultTTL)
    }

    package var targetedFields: [String] {
        TargetedCacheControl.targets(operatorField: cache.targetedField.isEmpty ? nil : cache.targetedField)
    }

    package var storagePolicy: StoragePolicy { StoragePolicy(setCookie: cache.setCookie) }
}

/// `HOST:PORT` as written in the configuration and on the command line.
public struct SocketAddressSpec: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces).
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65_535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "0.0.0.0" : host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

}

/// An origin: `http://host[:port]` (path ignored).
public struct OriginURL: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init?(parsing text: String) {
        guard let key = CacheKey(absoluteURI: text.hasSuffix("/") || text.contains("?") ? text : text + "/") else {
            return nil
        }
        scheme = key.scheme
        let authority = key.authority
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]"),
            let port = Int(authority[authority.index(after: colon)...])
        {
            host = String(authority[..<colon])
            self.port = port
        } else {
            host = authority
            port = key.scheme == "https" ? 443 : 80
        }
        guard !host.isEmpty else { return nil }
    }

    /// Whether the host is an IPv4 or IPv6 address rather than a name (TLS sends no SNI for
    /// an address, RFC 6066 §3).
    public var hostIsAddress: Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return (try? SocketAddress(ipAddress: bare, port: 0)) != nil
    }

    /// The authority as it goes in a Host field.
    public var authority: String {
        let defaultPort = scheme == "https" ? 443 : 80
        return port == defaultPort ? host : "\(host):\(port)"
    }

    public var description: String { "\(scheme)://\(authority)" }
}

extension OutpostConfiguration.Upstream {
    /// The parent a request's fetch goes to: that of the `[upstream.hosts]` entry that gives
    /// its origin (by Host with port, else without), when written as a table with one; else
    /// `upstream.parent`; nil for none.
    package func parent(for key: CacheKey) -> OriginURL? {
        // Most nodes have no per-Host parents: no hashing (and no parsing of the host out of
        // the authority) for them on every fetch.
        guard !hostParents.isEmpty else { return parent }
        if hosts[key.authority] != nil { return hostParents[key.authority] ?? parent }
        return hostParents[key.host] ?? parent
    }
}
