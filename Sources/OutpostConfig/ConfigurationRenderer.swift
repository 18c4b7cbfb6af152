/// The effective configuration as TOML, every key with the value in force (`outpost
/// check-config` prints it, as `nginx -T` does). Secrets are masked: the purge journal's
/// password is written as `***`, and the admin token is never written (only whether one is
/// set and where from). Parsing the output gives the same configuration back, but for those.
public enum ConfigurationRenderer {
    public static func render(_ configuration: OutpostConfiguration, tokenSource: String? = nil) -> String {
        var out = TOMLWriter()
        let server = configuration.server
        out.table("server")
        out.key("listen", string: server.listen.description)
        out.key("idle_timeout", number: server.idleTimeout)
        out.key("request_header_timeout", number: server.requestHeaderTimeout)
        if let maxConnections = server.maxConnections {
            out.key("max_connections", integer: maxConnections)
        } else {
            out.comment("max_connections: not set (half the open-file limit, at least 64)")
        }
        out.key("request_body_timeout", number: server.requestBodyTimeout)
        out.key("max_header_bytes", integer: server.maxHeaderBytes)
        out.key("max_headers", integer: server.maxHeaders)
        out.key("max_uri_length", integer: server.maxURILength)
        out.key("max_request_body_size", integer: server.maxRequestBodySize)
        out.key("max_ranges", integer: server.maxRanges)
        out.key("event_loops", integer: server.eventLoops)
        out.key("shutdown_grace", number: server.shutdownGrace)
        out.key("preserve_host", bool: server.preserveHost)
        out.key("via_pseudonym", string: server.viaPseudonym)
        if let tlsListen = server.tlsListen { out.key("tls_listen", string: tlsListen.description) }
        for certificate in server.certificates {
            out.arrayTable("server.certificates")
            out.key("cert", string: certificate.cert)
            out.key("key", string: certificate.key)
            if let hosts = certificate.hosts { out.key("hosts", strings: hosts) }
        }

        let http2 = configuration.http2
        out.table("http2")
        out.key("enabled", bool: http2.enabled)
        out.key("max_concurrent_streams", integer: http2.maxConcurrentStreams)
        out.key("max_header_list_size", integer: http2.maxHeaderListSize)
        out.key("header_table_size", integer: http2.headerTableSize)
        out.key("max_frame_size", integer: http2.maxFrameSize)
        out.key("initial_window_size", integer: http2.initialWindowSize)
        out.key("connection_window_size", integer: http2.connectionWindowSize)
        out.key("max_resets", integer: http2.maxResets)
        out.key("reset_window", number: http2.resetWindow)
        out.key("max_control_frames", integer: http2.maxControlFrames)
        out.key("control_window", number: http2.controlWindow)
        out.key("max_continuation_frames", integer: http2.maxContinuationFrames)
        out.key("max_glitches", integer: http2.maxGlitches)
        out.key("stall_timeout", number: http2.stallTimeout)

        let upstream = configuration.upstream
        out.table("upstream")
        if let origin = upstream.defaultOrigin { out.key("default", string: origin.description) }
        out.key("connect_timeout", number: upstream.connectTimeout)
        out.key("response_timeout", number: upstream.responseTimeout)
        out.key("read_timeout", number: upstream.readTimeout)
        out.key("max_connections_per_origin", integer: upstream.maxConnectionsPerOrigin)
        out.key("max_queued_requests", integer: upstream.maxQueuedRequests)
        if let caFile = upstream.tlsCAFile { out.key("tls_ca_file", string: caFile) }
        if let parent = upstream.parent { out.key("parent", string: parent.description) }
        out.key("parent_fallback", bool: upstream.parentFallback)
        if !upstream.hosts.isEmpty {
            out.table("upstream.hosts")
            for host in upstream.hosts.keys.sorted() {
                let origin = upstream.hosts[host]!.description
                if let parent = upstream.hostParents[host] {
                    out.line(
                        "\(QuotedString.quoted(host)) = { origin = \(QuotedString.quoted(origin)), "
                            + "parent = \(QuotedString.quoted(parent.description)) }")
                } else {
                    out.key(host, string: origin)
                }
            }
        }

        let cache = configuration.cache
        out.table("cache")
        out.key("uncacheable_ttl", number: cache.uncacheableTTL)
        out.key("heuristic_fraction", number: cache.heuristicFraction)
        out.key("heuristic_max", integer: Int(cache.heuristicMax))
        out.key("honour_request_directives", bool: cache.honourRequestDirectives)
        out.key("set_cookie", string: cache.setCookie.rawValue)
        out.key("debug_key", bool: cache.debugKey)
        out.key("range_fetch_max_size", integer: cache.rangeFetchMaxSize)
        out.key("targeted_field", string: cache.targetedField)
        out.key("default_ttl", integer: Int(cache.defaultTTL))
        out.key("stale_if_error", integer: Int(cache.staleIfError))
        out.key("expose_surrogate_keys", bool: cache.exposeSurrogateKeys)

        let store = configuration.store
        out.table("store")
        out.key("path", string: store.path)
        out.key("max_store_size", integer: store.maxStoreSize)
        out.key("max_object_size", integer: store.maxObjectSize)
        out.key("chunk_size", integer: store.chunkSize)
        out.key("max_variants", integer: store.maxVariants)
        out.key("sync_commits", bool: store.syncCommits)
        out.key("write_queue_limit", integer: store.writeQueueLimit)
        out.key("hot_records", integer: store.hotRecords)
        out.key("hot_body_bytes", integer: store.hotBodyBytes)
        out.key("disk_reserve", integer: store.diskReserve)
        out.key("on_corruption", string: store.onCorruption.rawValue)

        let compression = configuration.compression
        out.table("compression")
        out.key("enabled", bool: compression.enabled)
        out.key("types", strings: compression.types)
        out.key("min_size", integer: compression.minSize)
        out.key("brotli_quality", integer: compression.brotliQuality)
        out.key("gzip_level", integer: compression.gzipLevel)
        out.key("max_decoded_size", integer: compression.maxDecodedSize)
        out.key("max_pending_codings", integer: compression.maxPendingCodings)

        let cluster = configuration.cluster
        out.table("cluster")
        out.key("name", string: cluster.name)
        if let selfURL = cluster.selfURL { out.key("self", string: selfURL.description) }
        out.key("peers", strings: cluster.peers.map(\.description))
        out.key("health_interval", number: cluster.healthInterval)
        out.key("health_timeout", number: cluster.healthTimeout)
        out.key("health_fall", integer: cluster.healthFall)
        out.key("health_rise", integer: cluster.healthRise)
        out.key("local_copy_ttl", number: cluster.localCopyTTL)
        if let journal = cluster.purgeJournal { out.key("purge_journal", string: journal.description) }
        out.key("journal_retention", number: cluster.journalRetention)
        out.key("journal_timeout", number: cluster.journalTimeout)
        out.key("journal_poll_interval", number: cluster.journalPollInterval)
        out.key("journal_reconnect_max", number: cluster.journalReconnectMax)

        let admin = configuration.admin
        out.table("admin")
        out.key("listen", string: admin.listen.description)
        if let tokenFile = admin.tokenFile { out.key("token_file", string: tokenFile) }
        out.key("max_body_size", integer: admin.maxBodySize)
        out.comment(
            admin.token == nil
                ? "admin token: none (the admin API answers anyone who can reach admin.listen)"
                : "admin token: set (\(tokenSource ?? "from the configuration")), not shown")

        out.table("log")
        out.key("level", string: configuration.log.level)
        out.key("access", bool: configuration.log.access)
        out.key("format", string: configuration.log.format.rawValue)
        return out.text
    }
}

/// Writes TOML lines: tables, keys and values, strings quoted as TOML basic strings
/// (``QuotedString``).
private struct TOMLWriter {
    var text = ""

    mutating func line(_ line: String) { text += line + "\n" }

    mutating func table(_ name: String) {
        if !text.isEmpty { line("") }
        line("[\(name)]")
    }

    mutating func arrayTable(_ name: String) {
        line("")
        line("[[\(name)]]")
    }

    mutating func comment(_ comment: String) { line("# " + comment) }

    mutating func key(_ key: String, string value: String) { line("\(Self.bare(key)) = \(QuotedString.quoted(value))") }
    mutating func key(_ key: String, integer value: Int) { line("\(Self.bare(key)) = \(value)") }
    mutating func key(_ key: String, bool value: Bool) { line("\(Self.bare(key)) = \(value)") }

    mutating func key(_ key: String, number value: Double) {
        let written = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        line("\(Self.bare(key)) = \(written)")
    }

    mutating func key(_ key: String, strings values: [String]) {
        line("\(Self.bare(key)) = [\(values.map(QuotedString.quoted).joined(separator: ", "))]")
    }

    /// A key as written: bare when it is letters, digits, `-` and `_`; else quoted.
    static func bare(_ key: String) -> String {
        let plain =
            !key.isEmpty
            && key.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
        return plain ? key : QuotedString.quoted(key)
    }
}
