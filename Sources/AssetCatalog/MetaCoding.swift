#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Version metadata is stored as a JSON array of {key, value} objects, in the order given.
public enum MetaCoding {
    public static func encode(_ items: [MetaItem]) -> String {
        // Safe: encoding an array of string pairs cannot fail.
        let data = (try? JSONEncoder().encode(items)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [MetaItem] {
        // A row that does not parse shows as no metadata rather than failing the whole listing.
        (try? JSONDecoder().decode([MetaItem].self, from: Data(text.utf8))) ?? []
    }
}
