//! A BM25 full-text index in RAM (tantivy), shared by the shop and QA worlds.
//!
//! Built once per world and shared between its environments behind an `Arc`: a search
//! takes a fresh searcher from the reader, so environments on several threads query it at once.

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, FAST, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument};

use crate::EnvError;

/// An in-memory BM25 index whose documents carry a numeric id.
pub(crate) struct TextIndex {
    reader: IndexReader,
    parser: QueryParser,
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextIndex")
    }
}

fn backend(e: impl std::fmt::Display) -> EnvError {
    EnvError::Backend(format!("search index: {e}"))
}

impl TextIndex {
    /// Indexes `docs`: each an id and one text per field of `fields`, all searched by default.
    pub(crate) fn build<I>(fields: &[&str], docs: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = (u64, Vec<String>)>,
    {
        let mut builder = Schema::builder();
        // A fast (columnar) id: reading it for 50 hits costs far less than loading 50 stored
        // documents from the compressed doc store.
        let id = builder.add_u64_field("id", FAST);
        let text_fields: Vec<Field> =
            fields.iter().map(|f| builder.add_text_field(f, TEXT)).collect();
        let index = Index::create_in_ram(builder.build());
        // One thread and one commit give one segment with documents in insertion order, so
        // ties in score break the same way on every run.
        let mut writer: IndexWriter =
            index.writer_with_num_threads(1, 30_000_000).map_err(backend)?;
        for (doc_id, texts) in docs {
            let mut doc = TantivyDocument::default();
            doc.add_u64(id, doc_id);
            for (field, text) in text_fields.iter().zip(texts) {
                doc.add_text(*field, text);
            }
            writer.add_document(doc).map_err(backend)?;
        }
        writer.commit().map_err(backend)?;
        let reader = index.reader().map_err(backend)?;
        let parser = QueryParser::for_index(&index, text_fields);
        Ok(TextIndex { reader, parser })
    }

    /// The ids of the best `limit` documents for `query`, best first. The query is read as
    /// plain words: characters other than letters and digits are dropped and words are lower
    /// cased, so `AND`, `-`, quotes or brackets typed by an agent are never query syntax.
    pub(crate) fn search(&self, query: &str, limit: usize) -> Result<Vec<u64>, EnvError> {
        let words: String = query
            .chars()
            .map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { ' ' })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (query, _errors) = self.parser.parse_query_lenient(&words);
        let searcher = self.reader.searcher();
        let hits = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(backend)?;
        hits.into_iter()
            .map(|(_, addr)| {
                let ids = searcher
                    .segment_reader(addr.segment_ord)
                    .fast_fields()
                    .u64("id")
                    .map_err(backend)?;
                ids.first(addr.doc_id).ok_or_else(|| backend("a document lost its id"))
            })
            .collect()
    }
}
