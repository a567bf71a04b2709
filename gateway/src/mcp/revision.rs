//! MCP protocol revisions and what each one allows on the wire.

use std::fmt;

/// A protocol revision the gateway knows. It stays a transparent intermediary: it never changes
/// what the two ends negotiate, it only applies each revision's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Revision {
    /// HTTP+SSE transport.
    V2024_11_05,
    /// Streamable HTTP; the only revision with JSON-RPC batches.
    V2025_03_26,
    /// `MCP-Protocol-Version` header; batches removed.
    V2025_06_18,
    /// URL elicitation, tasks.
    V2025_11_25,
    /// Stateless; `Mcp-Method` / `Mcp-Name` headers that must match the body.
    V2026_07_28,
}

impl Revision {
    /// Every known revision, oldest first.
    pub const ALL: [Revision; 5] = [
        Revision::V2024_11_05,
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    /// What a request without `MCP-Protocol-Version` is assumed to speak (transports spec).
    pub const ASSUMED_WITHOUT_HEADER: Revision = Revision::V2025_03_26;

    /// The revision's date string.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2024_11_05 => "2024-11-05",
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Parses a revision date string.
    pub fn parse(s: &str) -> Option<Revision> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a POST body may be a JSON-RPC batch.
    pub fn allows_batch(self) -> bool {
        self == Revision::V2025_03_26
    }

    /// Whether requests must carry `Mcp-Method` (and `Mcp-Name` where the method names a target).
    pub fn requires_method_headers(self) -> bool {
        self >= Revision::V2026_07_28
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
