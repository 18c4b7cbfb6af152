import CacheStore
import Foundation
import HTTPCaching
import TOMLKit

/// A configuration problem, naming the key and what was wrong with it; or several, one per
/// line (the loader and `outpost check-config` list every problem they find, not only the
/// first).
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let problems: [String]
    public var message: String { problems.joined(separator: "\n") }
    public init(_ message: String) { problems = [message] }
    public init(problems: [String]) { self.problems = problems }
    public var description: String { message }
}

/// Reads conf/outpost.toml. TOMLKit parses the file; this walks the result itself so that an
/// unknown key or a value of the wrong type is reported by name instead of silently ignored.
public enum ConfigurationLoader {
    public static func load(path: String) throws -> OutpostConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("cannot read configuration file \(path): \(error.localizedDescription)")
        }
        return try parse(text, source: path)
    }

    /// `cluster.peers` needs `cluster.self` (which node this is), and names each node once.
    static func checkPeers(_ cluster: OutpostConfiguration.Cluster) throws {
        guard !cluster.peers.isEmpty else { return }
        guard cluster.selfURL != nil else {
            throw ConfigurationError(
                "cluster.peers needs cluster.self: this node's own URL as its peers reach it (one of the peers)")
        }
        var seen: Set<String> = []
        for peer in cluster.peers where !seen.insert(peer.description).inserted {
            throw ConfigurationError("cluster.peers names \(peer) twice")
        }
    }

    /// A TLS listener needs a certificate, and certificates need the listener (checked once
    /// the flags are applied: `--tls-listen` may give the listener).
    public static func checkTLS(_ server: OutpostConfiguration.Server) throws {
        if server.tlsListen != nil && server.certificates.isEmpty {
            throw ConfigurationError("server.tls_listen needs at least one [[server.certificates]] entry")
        }
        if server.tlsListen == nil && !server.certificates.isEmpty {
            throw ConfigurationError("[[server.certificates]] given without server.tls_listen")
        }
    }

    public static func parse(_ text: String, source: String = "configuration") throws -> OutpostConfiguration {
        let (configuration, problems) = try parseCollecting(text, source: source)
        guard problems.isEmpty else { throw ConfigurationError(problems: problems) }
        return configuration
    }

    /// The file read as far as it can be: the configuration with every key that was read
    /// right, and the problems with the others (for `outpost check-config`, which lists them
    /// all and goes on to check what it has). Throws only when the file cannot be read or is
    /// not TOML at all.
    public static func loadCollecting(path: String) throws -> (OutpostConfiguration, [String]) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("cannot read configuration file \(path): \(error.localizedDescription)")
        }
        return try parseCollecting(text, source: path)
    }

    public static func parseCollecting(
        _ text: String, source: String = "configuration"
    ) throws -> (OutpostConfiguration, [String]) {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError("\(source):\(error.source.begin.line): invalid TOML: \(error.description)")
        }
        var configuration = OutpostConfiguration()
        var reader = TableReader(table, path: "", problems: TableReader.Problems())
        try reader.table("server") { server in
            try server.address("listen") { configuration.server.listen = $0 }
            try server.seconds("idle_timeout") { configuration.server.idleTimeout = $0 }
            try server.seconds("request_header_timeout") { configuration.server.requestHeaderTimeout = $0 }
            try server.seconds("request_body_timeout") { configuration.server.requestBodyTimeout = $0 }
            try server.integer("max_connections", minimum: 1) { configuration.server.maxConnections = $0 }
            try server.size("max_header_bytes", minimum: 1024) { configuration.server.maxHeaderBytes = $0 }
            try server.integer("max_headers", minimum: 1) { configuration.server.maxHeaders = $0 }
            try server.size("max_uri_length", minimum: 256) { configuration.server.maxURILength = $0 }
            try server.size("max_request_body_size", minimum: 0) { configuration.server.maxRequestBodySize = $0 }
            try server.integer("max_ranges", minimum: 1) { configuration.server.maxRanges = $0 }
            try server.integer("event_loops", minimum: 0) { configuration.server.eventLoops = $0 }
            try server.seconds("shutdown_grace") { configuration.server.shutdownGrace = $0 }
            try server.bool("preserve_host") { configuration.server.preserveHost = $0 }
            try server.string("via_pseudonym") { configuration.server.viaPseudonym = $0 }
            try server.address("tls_listen") { configuration.server.tlsListen = $0 }
            try server.tables("certificates") { entry, label in
                var cert: String?
                var key: String?
                var hosts: [String]?
                try entry.string("cert") { cert = $0 }
                try entry.string("key") { key = $0 }
                try entry.stringArray("hosts") { hosts = $0.map { $0.lowercased() } }
                guard let cert, !cert.isEmpty, let key, !key.isEmpty else {
                    throw ConfigurationError("\(label) needs both cert and key (PEM files)")
                }
                if let hosts, hosts.isEmpty { throw ConfigurationError("\(label).hosts is empty") }
                configuration.server.certificates.append(CertificateFiles(cert: cert, key: key, hosts: hosts))
            }
        }
        try reader.table("http2") { http2 in
            try http2.bool("enabled") { configuration.http2.enabled = $0 }
            try http2.integer("max_concurrent_streams", minimum: 1) { configuration.http2.maxConcurrentStreams = $0 }
            try http2.size("max_header_list_size", minimum: 1024) { configuration.http2.maxHeaderListSize = $0 }
            try http2.size("header_table_size", minimum: 0) { configuration.http2.headerTableSize = $0 }
            try http2.size("max_frame_size", minimum: 16384) { size in
                guard size <= (1 << 24) - 1 else {
                    throw ConfigurationError("http2.max_frame_size must be at most 16777215 (RFC 9113 §6.5.2)")
                }
                configuration.http2.maxFrameSize = size
            }
            try http2.size("initial_window_size", minimum: 1024) { size in
                guard size <= Int(Int32.max) else {
                    throw ConfigurationError("http2.initial_window_size must be at most 2147483647 (RFC 9113 §6.9.2)")
                }
                configuration.http2.initialWindowSize = size
            }
            try http2.size("connection_window_size", minimum: 65535) { size in
                guard size <= Int(Int32.max) else {
                    throw ConfigurationError("http2.connection_window_size must be at most 2147483647")
                }
                configuration.http2.connectionWindowSize = size
            }
            try http2.integer("max_resets", minimum: 1) { configuration.http2.maxResets = $0 }
            try http2.seconds("reset_window") { configuration.http2.resetWindow = max($0, 1) }
            try http2.integer("max_control_frames", minimum: 1) { configuration.http2.maxControlFrames = $0 }
            try http2.seconds("control_window") { configuration.http2.controlWindow = max($0, 1) }
            try http2.integer("max_continuation_frames", minimum: 1) { configuration.http2.maxContinuationFrames = $0 }
            try http2.integer("max_glitches", minimum: 1) { configuration.http2.maxGlitches = $0 }
            try http2.seconds("stall_timeout") { configuration.http2.stallTimeout = max($0, 0.1) }
        }
        try reader.table("upstream") { upstream in
            try upstream.origin("default") { configuration.upstream.defaultOrigin = $0 }
            try upstream.seconds("connect_timeout") { configuration.upstream.connectTimeout = $0 }
            try upstream.seconds("response_timeout") { configuration.upstream.responseTimeout = $0 }
            try upstream.seconds("read_timeout") { configuration.upstream.readTimeout = $0 }
            try upstream.integer("max_connections_per_origin", minimum: 1) {
                configuration.upstream.maxConnectionsPerOrigin = $0
            }
            try upstream.integer("max_queued_requests", minimum: 0) { configuration.upstream.maxQueuedRequests = $0 }
            try upstream.string("tls_ca_file") { configuration.upstream.tlsCAFile = $0.isEmpty ? nil : $0 }
            try upstream.origin("parent") { configuration.upstream.parent = $0 }
            try upstream.bool("parent_fallback") { configuration.upstream.parentFallback = $0 }
            try upstream.table("hosts") { hosts in
                for key in hosts.remainingKeys {
                    // A string is the host's origin; a table gives its origin and its parent.
                    if hosts.isTable(key) {
                        var found: OriginURL?
                        try hosts.table(key) { host in
                            try host.origin("origin") { found = $0 }
                            try host.origin("parent") { configuration.upstream.hostParents[key.lowercased()] = $0 }
                        }
                        guard let found else {
                            throw ConfigurationError("upstream.hosts.\(key) needs an origin")
                        }
                        configuration.upstream.hosts[key.lowercased()] = found
                    } else {
                        try hosts.origin(key) { configuration.upstream.hosts[key.lowercased()] = $0 }
                    }
                }
            }
        }
        try reader.table("cache") { cache in
            try cache.seconds("uncacheable_ttl") { configuration.cache.uncacheableTTL = $0 }
            try cache.number("heuristic_fraction", range: 0...1) { configuration.cache.heuristicFraction = $0 }
            try cache.integer("heuristic_max", minimum: 0) { configuration.cache.heuristicMax = Int64(min($0, 86_399)) }
            try cache.bool("honour_request_directives") { configuration.cache.honourRequestDirectives = $0 }
            // The older key, kept for existing files: true stored such responses (stripped),
            // false did not. `set_cookie` wins when both are given.
            try cache.bool("store_set_cookie_when_public") { configuration.cache.setCookie = $0 ? .strip : .pass }
            try cache.oneOf("set_cookie", SetCookiePolicy.self) { configuration.cache.setCookie = $0 }
            try cache.bool("debug_key") { configuration.cache.debugKey = $0 }
            try cache.size("range_fetch_max_size", minimum: 0) { configuration.cache.rangeFetchMaxSize = $0 }
            try cache.string("targeted_field") { configuration.cache.targetedField = $0 }
            try cache.integer("default_ttl", minimum: 0) { configuration.cache.defaultTTL = Int64($0) }
            try cache.integer("stale_if_error", minimum: 0) { configuration.cache.staleIfError = Int64($0) }
            try cache.bool("expose_surrogate_keys") { configuration.cache.exposeSurrogateKeys = $0 }
        }
        try reader.table("store") { store in
            try store.string("path") { configuration.store.path = $0 }
            try store.size("max_store_size", minimum: 1 << 20) { configuration.store.maxStoreSize = $0 }
            try store.size("max_object_size", minimum: 1) { configuration.store.maxObjectSize = $0 }
            try store.size("chunk_size", minimum: 4096) { configuration.store.chunkSize = $0 }
            try store.integer("max_variants", minimum: 1) { configuration.store.maxVariants = $0 }
            try store.bool("sync_commits") { configuration.store.syncCommits = $0 }
            try store.size("write_queue_limit", minimum: 1 << 20) { configuration.store.writeQueueLimit = $0 }
            try store.integer("hot_records", minimum: 1) { configuration.store.hotRecords = $0 }
            try store.size("hot_body_bytes", minimum: 0) { configuration.store.hotBodyBytes = $0 }
            try store.size("disk_reserve", minimum: 0) { configuration.store.diskReserve = $0 }
            try store.oneOf("on_corruption", CorruptionPolicy.self) { configuration.store.onCorruption = $0 }
        }
        try reader.table("compression") { compression in
            try compression.bool("enabled") { configuration.compression.enabled = $0 }
            try compression.stringArray("types") { configuration.compression.types = $0 }
            try compression.size("min_size", minimum: 0) { configuration.compression.minSize = $0 }
            try compression.integer("brotli_quality", minimum: 0) {
                configuration.compression.brotliQuality = min($0, 11)
            }
            try compression.integer("gzip_level", minimum: 1) { configuration.compression.gzipLevel = min($0, 9) }
            try compression.size("max_decoded_size", minimum: 1024) { configuration.compression.maxDecodedSize = $0 }
            try compression.integer("max_pending_codings", minimum: 1) {
                configuration.compression.maxPendingCodings = $0
            }
        }
        try reader.table("cluster") { cluster in
            try cluster.string("name") { name in
                // RFC 8586: a cdn-id is a token (or a host); one without list or parameter
                // separators keeps the field parseable.
                guard !name.isEmpty, name.utf8.allSatisfy(TableReader.isTokenByte) else {
                    throw ConfigurationError("cluster.name \"\(name)\" must be a token (letters, digits, -._~)")
                }
                configuration.cluster.name = name
            }
            try cluster.origin("self") { configuration.cluster.selfURL = $0 }
            try cluster.origins("peers") { configuration.cluster.peers = $0 }
            try cluster.seconds("health_interval") { configuration.cluster.healthInterval = max($0, 0.1) }
            try cluster.seconds("health_timeout") { configuration.cluster.healthTimeout = max($0, 0.05) }
            try cluster.integer("health_fall", minimum: 1) { configuration.cluster.healthFall = $0 }
            try cluster.integer("health_rise", minimum: 1) { configuration.cluster.healthRise = $0 }
            try cluster.seconds("local_copy_ttl") { configuration.cluster.localCopyTTL = $0 }
            try cluster.string("purge_journal") { text in
                guard !text.isEmpty else { return }
                configuration.cluster.purgeJournal = try JournalLocation(parsing: text)
            }
            try cluster.seconds("journal_retention") { configuration.cluster.journalRetention = max($0, 1) }
            try cluster.seconds("journal_timeout") { configuration.cluster.journalTimeout = max($0, 0.1) }
            try cluster.seconds("journal_poll_interval") { configuration.cluster.journalPollInterval = max($0, 0.1) }
            try cluster.seconds("journal_reconnect_max") { configuration.cluster.journalReconnectMax = max($0, 0.1) }
            try Self.checkPeers(configuration.cluster)
        }
        try reader.table("admin") { admin in
            try admin.address("listen") { configuration.admin.listen = $0 }
            try admin.string("token_file") { configuration.admin.tokenFile = $0 }
            try admin.size("max_body_size", minimum: 1024) { configuration.admin.maxBodySize = $0 }
        }
        try reader.table("log") { log in
            try log.string("level") { level in
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                guard levels.contains(level) else {
                    throw ConfigurationError("log.level: \"\(level)\" is not one of \(levels.joined(separator: ", "))")
                }
                configuration.log.level = level
            }
            try log.bool("access") { configuration.log.access = $0 }
            try log.oneOf("format", LogFormat.self) { configuration.log.format = $0 }
        }
        reader.finish()
        return (configuration, reader.problems.list)
    }
}

/// Parses sizes such as `1048576`, `"64k"`, `"512MiB"`, `"1 GB"` (powers of 1024 throughout,
/// as operators size disks and memory).
public enum ByteSize {
    /// A TLS listener needs a certificate, and certificates need the listener (checked once
    /// the flags are applied: `--tls-listen` may give the listener).
    public static func checkTLS(_ server: OutpostConfiguration.Server) throws {
        if server.tlsListen != nil && server.certificates.isEmpty {
            throw ConfigurationError("server.tls_listen needs at least one [[server.certificates]] entry")
        }
        if server.tlsListen == nil && !server.certificates.isEmpty {
            throw ConfigurationError("[[server.certificates]] given without server.tls_listen")
        }
    }

    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let digits = trimmed.prefix(while: { $0.isASCII && $0.isNumber })
        guard let value = Int(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let multiplier: Int
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        case "t", "tb", "tib": multiplier = 1 << 40
        default: return nil
        }
        let (result, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : result
    }
}
