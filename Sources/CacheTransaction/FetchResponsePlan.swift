import HTTPCaching

/// What the cache does with a response it fetched, decided from its head before the body is
/// read. Pure (FetchResponsePlanTests); the fetch only performs it.
package enum FetchResponsePlan: Equatable, Sendable {
    /// Read the body: store it or not (`storage`); when `rangeLength` is set, the client's
    /// Range is cut from the body as received, which is that long.
    case proceed(storage: StoreDecision, rangeLength: Int64?)
    /// The client asked for a Range of an object larger than `cache.range_fetch_max_size`: it
    /// is not read whole for one range; the range is fetched alone instead.
    case fetchRangeAlone

    /// - Parameters:
    ///   - storage: what the caching rules say of storing it (`Storability.decide`).
    ///   - declaredLength: the response's Content-Length, when it has a valid one.
    ///   - rangeRequested: the client's Range applies to this response (a GET with a Range of
    ///     a 200 whose If-Range matches, ``ClientAnswer/rangeSpec(method:requestHeaders:of:)``)
    ///     and was not sent upstream.
    static func decide(
        storage: StoreDecision, declaredLength: Int?, rangeRequested: Bool, maxObjectSize: Int,
        rangeFetchMaxSize: Int
    ) -> FetchResponsePlan {
        var storage = storage
        if storage.mayStore, let declaredLength, declaredLength > maxObjectSize {
            storage = .doNotStore(reason: "larger than max_object_size")
        }
        // Without a length the range cannot be placed before the body has come: it is read
        // whole and the client gets all of it (RFC 9110 §14.2 lets a server ignore Range).
        guard rangeRequested, let declaredLength else { return .proceed(storage: storage, rangeLength: nil) }
        if declaredLength > rangeFetchMaxSize { return .fetchRangeAlone }
        return .proceed(storage: storage, rangeLength: Int64(declaredLength))
    }
}
