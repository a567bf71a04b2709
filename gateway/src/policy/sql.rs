//! What a SQL string does: its statement kinds and the tables it touches, read with sqlparser's
//! PostgreSQL dialect.
//!
//! The matcher must hold however the SQL is written, so it works on the parsed tree, never on
//! the text: aliases, quoting, comments, case, joins, subqueries, set operations, CTEs
//! (including data-modifying ones) and several statements in one string all reduce to the same
//! set of (schema, table) pairs. CTE names are scoped as PostgreSQL scopes them, so a CTE cannot
//! launder a real table of the same name. Anything sqlparser cannot parse is denied, as is
//! anything whose tables cannot be named (`TABLE` without a name, say).

use std::{collections::BTreeSet, ops::ControlFlow};

use sqlparser::{
    ast::{ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor},
    dialect::PostgreSqlDialect,
    keywords::Keyword,
    parser::Parser,
    tokenizer::{Token, Tokenizer},
};

use crate::config::policy::SqlSpec;

/// Deepest nesting sqlparser is allowed to follow before giving up (and the query is denied).
const RECURSION_LIMIT: usize = 64;

/// Operators (and infix keywords: AND, UNION, ...) one SQL string may hold. sqlparser builds
/// chains of them (`1+1+...`, `... UNION SELECT ...`) into trees as deep as they are long,
/// past its recursion limit, and dropping such a tree recurses once per level: a few hundred
/// kilobytes of `+` overflowed the stack and aborted the gateway. Beyond this many the query
/// is denied unread.
const MAX_OPERATORS: usize = 2048;

/// Stack the analysis wants left (with less, it runs on a stack of its own), and the size of
/// that stack: [`MAX_OPERATORS`] levels take a few hundred kilobytes in a debug build.
const STACK_RED_ZONE: usize = 1 << 20;
const STACK_SIZE: usize = 4 << 20;

/// Infix keywords: each may add a level to an expression or a set operation.
const INFIX_KEYWORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::XOR,
    Keyword::IS,
    Keyword::NOT,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::BETWEEN,
    Keyword::IN,
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::MINUS,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::OVERLAPS,
    Keyword::ESCAPE,
    Keyword::DIV,
    Keyword::MEMBER,
    Keyword::REGEXP,
    Keyword::RLIKE,
    Keyword::GLOB,
    Keyword::MATCH,
    Keyword::OPERATOR,
    // Postfix, PostgreSQL's: `a NOTNULL NOTNULL ...` nests without the recursion counter.
    Keyword::NOTNULL,
];

/// Whether a token may add a level to the parsed tree: operators and infix keywords; not
/// names, literals, punctuation or white space. (A token this list does not know counts.)
fn deepens(token: &Token) -> bool {
    use Token as T;
    match token {
        T::Word(w) => INFIX_KEYWORDS.contains(&w.keyword),
        T::EOF
        | T::Number(..)
        | T::Char(_)
        | T::SingleQuotedString(_)
        | T::DoubleQuotedString(_)
        | T::TripleSingleQuotedString(_)
        | T::TripleDoubleQuotedString(_)
        | T::DollarQuotedString(_)
        | T::SingleQuotedByteStringLiteral(_)
        | T::DoubleQuotedByteStringLiteral(_)
        | T::TripleSingleQuotedByteStringLiteral(_)
        | T::TripleDoubleQuotedByteStringLiteral(_)
        | T::SingleQuotedRawStringLiteral(_)
        | T::DoubleQuotedRawStringLiteral(_)
        | T::TripleSingleQuotedRawStringLiteral(_)
        | T::TripleDoubleQuotedRawStringLiteral(_)
        | T::NationalStringLiteral(_)
        | T::QuoteDelimitedStringLiteral(_)
        | T::NationalQuoteDelimitedStringLiteral(_)
        | T::EscapedStringLiteral(_)
        | T::UnicodeStringLiteral(_)
        | T::HexStringLiteral(_)
        | T::Placeholder(_)
        | T::Comma
        | T::Whitespace(_)
        | T::LParen
        | T::RParen
        | T::Period
        | T::SemiColon => false,
        _ => true,
    }
}

/// The facts the matcher decides on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    pub kinds: BTreeSet<String>,
    /// (schema, table), with unqualified names in the default schema.
    pub tables: BTreeSet<(String, String)>,
    /// Tables named without a schema (for schema-less deny entries).
    pub unqualified: BTreeSet<String>,
    /// Functions called, by their own name (schema dropped), folded like identifiers.
    pub functions: BTreeSet<String>,
}

/// Functions refused unless a rule sets `allow_risky_functions`: they read files or other
/// databases, run SQL given as a string (which the table checks cannot see), change settings,
/// or stop other sessions.
pub const RISKY_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_from_bytea",
    "lo_unlink",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    // tablefunc's and full-text search's functions that run a query given as text.
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "set_config",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "nextval",
    "setval",
    "pg_logical_emit_message",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_log_backend_memory_contexts",
];

/// PostgreSQL's folding of an unquoted identifier.
pub fn fold_ident(s: &str) -> String {
    s.to_lowercase()
}

/// Parses `sql` and collects what it does.
pub fn analyse(sql: &str, default_schema: &str) -> Result<Analysis, String> {
    stacker::maybe_grow(STACK_RED_ZONE, STACK_SIZE, || {
        analyse_here(sql, default_schema)
    })
}

fn analyse_here(sql: &str, default_schema: &str) -> Result<Analysis, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| format!("the SQL does not parse: {e}"))?;
    // Counted before parsing: a parse that fails drops what it built as well.
    if tokens
        .iter()
        .filter(|t| deepens(&t.token))
        .nth(MAX_OPERATORS)
        .is_some()
    {
        return Err(format!(
            "the SQL has more than {MAX_OPERATORS} operators, more than the matcher reads"
        ));
    }
    // Brackets nested deeper than the parser's limit could follow: some of its paths
    // (`JSON_TABLE`'s NESTED columns) recurse per level without counting.
    let mut open = 0usize;
    for t in &tokens {
        match t.token {
            Token::LParen | Token::LBracket | Token::LBrace => open += 1,
            Token::RParen | Token::RBracket | Token::RBrace => open = open.saturating_sub(1),
            _ => {}
        }
        if open > 2 * RECURSION_LIMIT {
            return Err(format!(
                "the SQL nests brackets more than {} deep",
                2 * RECURSION_LIMIT
            ));
        }
    }
    let statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| format!("the SQL does not parse: {e}"))?;
    if statements.is_empty() {
        return Err("the SQL contains no statement".into());
    }
    let mut walker = Walker {
        default_schema,
        out: Analysis::default(),
        scopes: Vec::new(),
        error: None,
        called: Vec::new(),
    };
    for statement in &statements {
        walker.out.kinds.insert(statement_kind(statement));
        if let Statement::Explain {
            statement: inner, ..
        } = statement
        {
            // EXPLAIN ANALYZE runs the statement: judge it as if it ran.
            walker.out.kinds.insert(statement_kind(inner));
        }
        let _ = statement.visit(&mut walker);
        if let Some(e) = walker.error.take() {
            return Err(e);
        }
    }
    Ok(walker.out)
}

/// Checks an analysis against a spec; the error says what was refused.
pub fn check(spec: &SqlSpec, sql: &str) -> Result<(), String> {
    let a = analyse(sql, &spec.default_schema)?;
    if let Some(allowed) = &spec.statements
        && let Some(kind) = a.kinds.iter().find(|k| !allowed.contains(*k))
    {
        return Err(format!("statement kind {kind:?} is not allowed"));
    }
    for f in &a.functions {
        if spec.deny_functions.contains(f) {
            return Err(format!("function {f}() is denied"));
        }
        if let Some(allowed) = &spec.functions
            && !allowed.contains(f)
        {
            return Err(format!("function {f}() is not among the allowed functions"));
        }
    }
    for (schema, table) in &a.tables {
        let denied = spec
            .deny_tables
            .iter()
            .any(|(s, t)| t == table && s.as_ref().is_none_or(|s| s == schema));
        if denied {
            return Err(format!("table {schema}.{table} is denied"));
        }
        if let Some(allowed) = &spec.tables
            && !allowed.contains(&(schema.clone(), table.clone()))
        {
            return Err(format!(
                "table {schema}.{table} is not among the allowed tables"
            ));
        }
    }
    Ok(())
}

/// The kind name of a statement (see `SQL_KINDS`).
fn statement_kind(s: &Statement) -> String {
    let kind = match s {
        Statement::Query(q) => return query_kind(q).to_owned(),
        Statement::Insert(_) => "insert",
        Statement::Update { .. } => "update",
        Statement::Delete(_) => "delete",
        Statement::Merge { .. } => "merge",
        Statement::Copy { .. } => "copy",
        Statement::Truncate { .. } => "truncate",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => "explain",
        Statement::Grant { .. } => "grant",
        Statement::Revoke { .. } => "revoke",
        Statement::Set(_) | Statement::Reset(_) => "set",
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => "show",
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => "transaction",
        Statement::Call(_) => "call",
        Statement::Execute { .. } => "execute",
        Statement::Prepare { .. } | Statement::Deallocate { .. } => "prepare",
        Statement::Lock(_) | Statement::LockTables { .. } => "lock",
        Statement::Vacuum(_) => "vacuum",
        Statement::Analyze { .. } => "analyze",
        other => {
            // Every CREATE/ALTER/DROP variant, by the variant's own name: the start of its
            // Debug text, cut off there (the whole text recursed through the whole tree).
            let variant = variant_name(other);
            for prefix in ["Create", "Alter", "Drop"] {
                if variant.starts_with(prefix) {
                    return prefix.to_ascii_lowercase();
                }
            }
            "other"
        }
    };
    kind.to_owned()
}

/// The name of `value`'s enum variant: its Debug text up to the first character that is no
/// letter or digit, written no further.
fn variant_name(value: &impl std::fmt::Debug) -> String {
    struct Name(String);
    impl std::fmt::Write for Name {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if !c.is_ascii_alphanumeric() || self.0.len() >= 64 {
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
            }
            Ok(())
        }
    }
    let mut name = Name(String::new());
    let _ = std::fmt::write(&mut name, format_args!("{value:?}"));
    name.0
}

fn query_kind(q: &Query) -> &'static str {
    if !q.locks.is_empty() {
        return "select_for_update";
    }
    set_expr_kind(&q.body)
}

/// The first kind other than "select" among the operands of set operations, left to right
/// (walked without recursing down the chain, which may be long).
fn set_expr_kind(e: &SetExpr) -> &'static str {
    let mut operands = vec![e];
    while let Some(e) = operands.pop() {
        let kind = match e {
            SetExpr::Select(s) if s.into.is_some() => "select_into",
            SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => "select",
            SetExpr::Query(q) => query_kind(q),
            SetExpr::SetOperation { left, right, .. } => {
                operands.push(right);
                operands.push(left);
                continue;
            }
            SetExpr::Insert(_) => "insert",
            SetExpr::Update(_) => "update",
            SetExpr::Delete(_) => "delete",
            SetExpr::Merge(_) => "merge",
        };
        if kind != "select" {
            return kind;
        }
    }
    "select"
}

/// One query's CTE scope.
struct Scope {
    /// CTE names visible to relations read directly in this query.
    visible: Vec<String>,
    /// For a query with WITH: each CTE body and the names visible inside it.
    bodies: Vec<(*const Query, Vec<String>)>,
}

struct Walker<'a> {
    default_schema: &'a str,
    out: Analysis,
    scopes: Vec<Scope>,
    error: Option<String>,
    /// Names of functions called where a table stands (`FROM f(...)`), which the relation
    /// visitor sees as well: they are no tables.
    called: Vec<*const ObjectName>,
}

impl Walker<'_> {
    fn record(&mut self, schema: Option<String>, table: String) {
        if schema.is_none() {
            self.out.unqualified.insert(table.clone());
        }
        let schema = schema.unwrap_or_else(|| self.default_schema.to_owned());
        self.out.tables.insert((schema, table));
    }

    /// Tables named by a query's own body that the relation visitor does not see.
    fn body_tables(&mut self, e: &SetExpr) {
        let mut operands = vec![e];
        while let Some(e) = operands.pop() {
            match e {
                SetExpr::Table(t) => match &t.table_name {
                    Some(name) => {
                        let schema = t.schema_name.as_deref().map(fold_ident);
                        let table = fold_ident(name);
                        if schema.is_some() || !self.is_cte(&table) {
                            self.record(schema, table);
                        }
                    }
                    None => self.error = Some("a TABLE statement without a table name".into()),
                },
                SetExpr::SetOperation { left, right, .. } => {
                    operands.push(right);
                    operands.push(left);
                }
                _ => {}
            }
        }
    }

    /// Records a called function by its own name (the schema dropped).
    fn function(&mut self, name: &ObjectName) -> ControlFlow<()> {
        match name.0.last().and_then(|p| p.as_ident()) {
            Some(ident) => {
                self.out.functions.insert(ident_text(ident));
                ControlFlow::Continue(())
            }
            None => {
                self.error = Some(format!("cannot name the function {name}"));
                ControlFlow::Break(())
            }
        }
    }

    fn is_cte(&self, name: &str) -> bool {
        self.scopes
            .last()
            .is_some_and(|s| s.visible.iter().any(|v| v == name))
    }
}

fn ident_text(ident: &sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => fold_ident(&ident.value),
    }
}

impl Visitor for Walker<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let ptr = query as *const Query;
        let inherited = match self.scopes.last() {
            Some(parent) => match parent.bodies.iter().find(|(p, _)| *p == ptr) {
                Some((_, names)) => names.clone(),
                None => parent.visible.clone(),
            },
            None => Vec::new(),
        };
        let mut scope = Scope {
            visible: inherited.clone(),
            bodies: Vec::new(),
        };
        if let Some(with) = &query.with {
            let names: Vec<String> = with
                .cte_tables
                .iter()
                .map(|c| ident_text(&c.alias.name))
                .collect();
            for (i, cte) in with.cte_tables.iter().enumerate() {
                // Non-recursive WITH: a CTE sees only the CTEs before it. A forward reference
                // names a real table, and must be judged as one.
                let mut inside = inherited.clone();
                let upto = if with.recursive { names.len() } else { i };
                inside.extend(names[..upto].iter().cloned());
                scope.bodies.push((&*cte.query as *const Query, inside));
            }
            scope.visible.extend(names);
        }
        self.scopes.push(scope);
        self.body_tables(&query.body);
        // A data-modifying CTE or subquery makes the statement modify data, whatever its top.
        self.out.kinds.insert(query_kind(query).to_owned());
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &sqlparser::ast::Expr) -> ControlFlow<()> {
        if let sqlparser::ast::Expr::Function(f) = expr {
            return self.function(&f.name);
        }
        ControlFlow::Continue(())
    }

    /// A function called where a table stands is a call like any other: `FROM
    /// pg_read_file(...)`, `LATERAL query_to_xml('select ...', ...)`, `FROM dblink_exec(...)`
    /// run what the function checks exist to stop.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                self.called.push(name as *const ObjectName);
                self.function(name)
            }
            TableFactor::Function { name, .. } => self.function(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.out.kinds.insert(statement_kind(statement));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if self.called.contains(&(relation as *const ObjectName)) {
            return ControlFlow::Continue(());
        }
        let mut parts = Vec::with_capacity(relation.0.len());
        for part in &relation.0 {
            match part.as_ident() {
                Some(ident) => parts.push(ident_text(ident)),
                None => {
                    self.error = Some(format!("cannot name the relation {relation}"));
                    return ControlFlow::Break(());
                }
            }
        }
        match parts.as_slice() {
            [table] if self.is_cte(table) => {}
            [table] => self.record(None, table.clone()),
            // catalog.schema.table: PostgreSQL allows only the current database as catalog.
            [.., schema, table] => self.record(Some(schema.clone()), table.clone()),
            [] => self.error = Some("an empty relation name".into()),
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn tables(sql: &str) -> Vec<String> {
        analyse(sql, "public")
            .unwrap()
            .tables
            .into_iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect()
    }

    fn spec(statements: &[&str], tables: &[&str]) -> SqlSpec {
        SqlSpec {
            statements: Some(statements.iter().map(|s| s.to_string()).collect()),
            tables: Some(
                tables
                    .iter()
                    .map(|t| ("public".to_owned(), t.to_string()))
                    .collect::<HashSet<_>>(),
            ),
            deny_tables: Vec::new(),
            default_schema: "public".into(),
            functions: None,
            deny_functions: RISKY_FUNCTIONS.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn tables_through_every_shape_of_query() {
        let cases: &[(&str, &[&str])] = &[
            ("SELECT * FROM customers", &["public.customers"]),
            ("select * from CUSTOMERS c", &["public.customers"]),
            ("SELECT * FROM \"customers\"", &["public.customers"]),
            ("SELECT * FROM \"Customers\"", &["public.Customers"]),
            ("SELECT * FROM public.financials", &["public.financials"]),
            (
                "SELECT * FROM \"public\".\"financials\"",
                &["public.financials"],
            ),
            ("SELECT * FROM db.public.financials", &["public.financials"]),
            (
                "SELECT * FROM customers c JOIN financials f ON c.id = f.customer_id",
                &["public.customers", "public.financials"],
            ),
            (
                "SELECT * FROM customers WHERE id IN (SELECT customer_id FROM financials)",
                &["public.customers", "public.financials"],
            ),
            (
                "SELECT (SELECT max(amount) FROM financials) AS m FROM customers",
                &["public.customers", "public.financials"],
            ),
            (
                "SELECT * FROM (SELECT * FROM financials) AS x",
                &["public.financials"],
            ),
            (
                "WITH x AS (SELECT * FROM financials) SELECT * FROM x",
                &["public.financials"],
            ),
            (
                "SELECT * FROM customers UNION SELECT * FROM financials",
                &["public.customers", "public.financials"],
            ),
            (
                "SELECT * FROM customers /* FROM financials */ -- financials\n",
                &["public.customers"],
            ),
            ("SELECT 1; SELECT * FROM financials", &["public.financials"]),
            (
                "SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM financials f WHERE f.customer_id = customers.id)",
                &["public.customers", "public.financials"],
            ),
            (
                "SELECT * FROM LATERAL (SELECT * FROM financials) f",
                &["public.financials"],
            ),
        ];
        for (sql, want) in cases {
            let got = tables(sql);
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "{sql}");
        }
    }

    #[test]
    fn cte_names_scope_like_postgresql() {
        // The CTE named like a real table hides it in the main body...
        assert_eq!(
            tables("WITH financials AS (SELECT * FROM customers) SELECT * FROM financials"),
            ["public.customers"]
        );
        // ...but not inside an earlier CTE, where `financials` is the real table.
        assert_eq!(
            tables(
                "WITH a AS (SELECT * FROM financials), financials AS (SELECT 1) SELECT * FROM a"
            ),
            ["public.financials"]
        );
        // A CTE does not see itself unless RECURSIVE.
        assert_eq!(
            tables("WITH financials AS (SELECT * FROM financials) SELECT * FROM financials"),
            ["public.financials"]
        );
        assert!(
            tables("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r")
                .is_empty()
        );
        // Scopes end with their query.
        assert_eq!(
            tables(
                "SELECT * FROM (WITH financials AS (SELECT 1) SELECT * FROM financials) s, financials"
            ),
            ["public.financials"]
        );
    }

    #[test]
    fn select_only_policies_hold() {
        let s = spec(&["select"], &["customers"]);
        assert_eq!(check(&s, "SELECT name FROM customers WHERE id = 1"), Ok(()));
        assert_eq!(
            check(&s, "select c.name from public.customers as c"),
            Ok(())
        );
        let refused = [
            "SELECT * FROM financials",
            "SELECT * FROM customers JOIN financials USING (id)",
            "SELECT * FROM customers WHERE id IN (SELECT customer_id FROM financials)",
            "WITH f AS (SELECT * FROM financials) SELECT * FROM customers, f",
            "SELECT * FROM customers; SELECT * FROM financials",
            "SELECT * FROM customers; DELETE FROM customers",
            "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d",
            "SELECT * INTO stolen FROM customers",
            "SELECT * FROM customers FOR UPDATE",
            "UPDATE customers SET name = 'x'",
            "INSERT INTO customers VALUES (1)",
            "DROP TABLE customers",
            "COPY customers TO '/tmp/x'",
            "EXPLAIN ANALYZE DELETE FROM customers",
            "TRUNCATE customers",
            "SET search_path = evil",
            "SELECT * FROM pg_catalog.pg_authid",
            "SELECT * FROM \"fіnancials\"",
            "SELECT * FROM other.customers",
            "SELECT * FROM \"Customers\"",
            "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
            "TABLE financials",
            "SELECT * FROM customers UNION TABLE financials",
            "SELEC * FROM customers",
            "",
            "SELECT * FROM customers WHERE name = 'unterminated",
            "SELECT * FROM customers /* unterminated",
        ];
        for sql in refused {
            assert!(check(&s, sql).is_err(), "{sql} should be refused");
        }
    }

    #[test]
    fn functions_that_reach_around_the_table_checks_are_refused() {
        let s = spec(&["select"], &["customers"]);
        assert_eq!(
            check(&s, "SELECT count(*), lower(name) FROM customers"),
            Ok(())
        );
        for sql in [
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT query_to_xml('select * from financials', true, true, '')",
            "SELECT name, table_to_xml('financials', true, true, '') FROM customers",
            "SELECT PG_CATALOG.PG_READ_FILE('/etc/shadow')",
            "SELECT \"pg_read_file\"('/etc/passwd')",
            "SELECT * FROM customers WHERE id = (SELECT length(pg_read_file('/etc/hostname')))",
            "SELECT * FROM customers ORDER BY set_config('search_path', 'evil', false)",
            "SELECT * FROM dblink('host=x', 'select * from financials') AS t(a int)",
            "SELECT pg_sleep(3600)",
            // Full-text search and tablefunc run a query given as text.
            "SELECT * FROM ts_stat('SELECT to_tsvector(card_no) FROM financials')",
            "SELECT ts_rewrite('a'::tsquery, 'SELECT q, s FROM financials')",
            "SELECT * FROM crosstab('SELECT a, b, c FROM financials') AS t(a text, b text)",
            "SELECT * FROM connectby('financials', 'id', 'parent', '1', 0) AS t(id int)",
            "SELECT dblink_open('c', 'SELECT * FROM financials')",
        ] {
            assert!(check(&s, sql).is_err(), "{sql} should be refused");
        }
        // Called where a table stands, with or without LATERAL, with or without a table list:
        // still calls (the table checks never saw them before).
        let mut no_tables = spec(&["select"], &[]);
        no_tables.tables = None;
        no_tables.deny_tables = vec![(None, "financials".into())];
        for sql in [
            "SELECT * FROM customers, LATERAL query_to_xml('select * from financials', true, false, '') x",
            "SELECT * FROM customers CROSS JOIN LATERAL pg_read_file('/etc/passwd') f",
            "SELECT * FROM lo_from_bytea(0, 'x')",
            "SELECT * FROM dblink_exec('host=x', 'DELETE FROM financials')",
            "SELECT * FROM pg_catalog.set_config('search_path', 'evil', false)",
            "SELECT * FROM customers c JOIN LATERAL pg_sleep(3600) s ON true",
        ] {
            for spec in [&s, &no_tables] {
                let e = check(spec, sql).unwrap_err();
                assert!(e.starts_with("function "), "{sql}: {e}");
            }
        }
        // A harmless set-returning function is a function, not a table.
        let a = analyse("SELECT * FROM generate_series(1, 3) g", "public").unwrap();
        assert!(a.tables.is_empty(), "{:?}", a.tables);
        assert!(a.functions.contains("generate_series"));
        let mut only = spec(&["select"], &["customers"]);
        only.functions = Some(["count".to_string()].into_iter().collect());
        assert_eq!(check(&only, "SELECT count(*) FROM customers"), Ok(()));
        assert!(
            check(
                &only,
                "SELECT * FROM customers, LATERAL generate_series(1, 3) g"
            )
            .unwrap_err()
            .contains("generate_series() is not among")
        );
        assert!(
            check(&only, "SELECT md5(name) FROM customers")
                .unwrap_err()
                .contains("md5() is not among")
        );
    }

    #[test]
    fn deny_lists_apply_in_every_schema_unless_qualified() {
        let mut s = spec(&["select"], &[]);
        s.tables = None;
        s.deny_tables = vec![(None, "financials".into())];
        assert!(check(&s, "SELECT * FROM customers").is_ok());
        assert!(check(&s, "SELECT * FROM FINANCIALS").is_err());
        assert!(check(&s, "SELECT * FROM archive.financials").is_err());
        s.deny_tables = vec![(Some("public".into()), "financials".into())];
        assert!(check(&s, "SELECT * FROM archive.financials").is_ok());
        assert!(check(&s, "SELECT * FROM financials").is_err());
    }

    #[test]
    fn nested_comments_and_odd_quoting_do_not_hide_tables() {
        let s = spec(&["select"], &["customers"]);
        // PostgreSQL nests block comments: all of this is one comment.
        assert_eq!(
            check(
                &s,
                "SELECT * FROM customers /* a /* b */ FROM financials */"
            ),
            Ok(())
        );
        assert!(
            check(
                &s,
                "SELECT * FROM customers /* a /* b */ */ JOIN financials ON true"
            )
            .is_err()
        );
        assert_eq!(
            check(&s, "SELECT $$ FROM financials $$ FROM customers"),
            Ok(())
        );
        assert_eq!(check(&s, "SELECT 'FROM financials' FROM customers"), Ok(()));
        assert_eq!(
            check(&s, "SELECT E'\\' FROM financials' FROM customers"),
            Ok(())
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let s = spec(&["select"], &["customers"]);
        let deep = format!(
            "SELECT {}1{} FROM customers",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(check(&s, &deep).is_err());
        let mut sub = String::from("SELECT * FROM customers");
        for _ in 0..200 {
            sub = format!("SELECT * FROM ({sub}) s");
        }
        assert!(check(&s, &sub).is_err());
    }

    /// Chains of operators build trees as deep as they are long (sqlparser's recursion limit
    /// does not see them), whose drop recursed: a few hundred kilobytes of `1+1+...` or of
    /// `UNION SELECT` overflowed the stack and aborted the process. Too many operators are
    /// refused unread, also where the rest would not parse; up to the limit, they are read.
    #[test]
    fn operator_chains_are_refused_not_overflowed() {
        let s = spec(&["select"], &["customers"]);
        for sql in [
            format!("SELECT {}1 FROM customers", "1+".repeat(200_000)),
            format!("SELECT {}1 FROM (", "1+".repeat(200_000)),
            format!("SELECT 1{}", " UNION SELECT 1".repeat(50_000)),
            format!(
                "SELECT 1 FROM customers WHERE {}",
                "a = 1 OR ".repeat(50_000)
            ),
            format!("CREATE VIEW v AS SELECT {}1", "1+".repeat(200_000)),
            format!(
                "SELECT 1 FROM customers WHERE a{}",
                " NOTNULL".repeat(100_000)
            ),
        ] {
            let why = check(&s, &sql).unwrap_err();
            assert!(why.contains("operators"), "{why}");
        }
        // Brackets beyond what the parser follows, on a path that does not count them.
        let nested = format!(
            "SELECT * FROM JSON_TABLE('[]', '$' COLUMNS ({} a INT{}))",
            "NESTED PATH '$' COLUMNS (".repeat(50_000),
            ")".repeat(50_000)
        );
        let why = check(&s, &nested).unwrap_err();
        assert!(why.contains("nests brackets"), "{why}");
        let most = format!("SELECT {}1 FROM customers", "1+".repeat(MAX_OPERATORS));
        assert_eq!(check(&s, &most), Ok(()));
        let union = format!(
            "SELECT 1 FROM customers{}",
            " UNION SELECT 1 FROM customers".repeat(MAX_OPERATORS)
        );
        assert_eq!(check(&s, &union), Ok(()));
        // On a small stack too (the analysis moves to a stack of its own).
        let small = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || check(&s, &most))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(small, Ok(()));
        // A kind named by its variant still reads (the Debug text is cut at the name).
        let sql = format!(
            "CREATE VIEW v AS SELECT {}1 FROM customers",
            "1+".repeat(1000)
        );
        let kinds = analyse(&sql, "public").unwrap().kinds;
        assert!(kinds.contains("create"), "{kinds:?}");
    }

    #[test]
    fn huge_statements_are_handled() {
        let s = spec(&["select"], &["customers"]);
        let mut sql = String::from("SELECT * FROM customers WHERE id IN (");
        for i in 0..100_000 {
            sql.push_str(&format!("{i},"));
        }
        sql.push_str("0)");
        assert_eq!(check(&s, &sql), Ok(()));
    }
}
