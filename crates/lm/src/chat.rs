//! Chat templates: a conversation of [`Message`]s to token ids, with a per-token mask of the
//! assistant's own tokens (the tokens SFT and DPO train on).
//!
//! We implement the template families themselves instead of a Jinja engine: the families are
//! few, and rendering segment by segment gives the assistant mask exactly.

use crate::error::Result;
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use stepagent_policy::{Message, Role};

/// A chat template family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n…<|im_end|>\n` (SmolLM2, Qwen2).
    ChatMl {
        /// The system prompt the template adds when the conversation has none.
        default_system: Option<String>,
    },
    /// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>` (Llama 3).
    Llama3,
    /// `[INST] … [/INST]…</s>` (Mistral, Llama 2).
    Mistral,
}

/// A rendered conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Per token: part of an assistant turn (its text and end-of-turn marker).
    pub assistant_mask: Vec<bool>,
    /// Token span of each assistant turn, in order.
    pub assistant_turns: Vec<Range<usize>>,
}

impl ChatTemplate {
    /// Recognises the family of a Jinja chat template (from GGUF metadata or
    /// `tokenizer_config.json`); `None` when it is none of ours.
    pub fn detect(jinja: &str) -> Option<ChatTemplate> {
        if jinja.contains("<|im_start|>") {
            Some(ChatTemplate::ChatMl { default_system: chatml_default_system(jinja) })
        } else if jinja.contains("<|start_header_id|>") {
            Some(ChatTemplate::Llama3)
        } else if jinja.contains("[INST]") {
            Some(ChatTemplate::Mistral)
        } else {
            None
        }
    }

    /// The token text that ends an assistant turn.
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "<|im_end|>",
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::Mistral => "</s>",
        }
    }

    /// A Jinja template `transformers` renders the same way (written into checkpoints).
    pub fn to_jinja(&self) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let sys = match default_system {
                    Some(s) => format!(
                        "{{% if messages[0]['role'] != 'system' %}}{{{{ '<|im_start|>system\\n{}<|im_end|>\\n' }}}}{{% endif %}}",
                        s.replace('\'', "\\'").replace('\n', "\\n")
                    ),
                    None => String::new(),
                };
                format!("{sys}{{% for message in messages %}}{{{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}}}{{% endfor %}}{{% if add_generation_prompt %}}{{{{ '<|im_start|>assistant\\n' }}}}{{% endif %}}")
            }
            ChatTemplate::Llama3 => "{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}".to_string(),
            ChatTemplate::Mistral => "{{ '<s>' }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '[INST] ' + message['content'] + '\\n\\n' }}{% else %}{{ message['content'] + '</s>' }}{% endif %}{% endfor %}".to_string(),
        }
    }

    /// The text segments of a conversation, each flagged when it is the assistant's.
    fn segments(&self, messages: &[Message], add_generation_prompt: bool) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if let (Some(sys), false) = (
                    default_system,
                    messages.first().map(|m| m.role == Role::System).unwrap_or(false),
                ) {
                    out.push((format!("<|im_start|>system\n{sys}<|im_end|>\n"), false));
                }
                for m in messages {
                    if m.role == Role::Assistant {
                        out.push(("<|im_start|>assistant\n".into(), false));
                        out.push((format!("{}<|im_end|>", m.content), true));
                        out.push(("\n".into(), false));
                    } else {
                        out.push((
                            format!("<|im_start|>{}\n{}<|im_end|>\n", role(m.role), m.content),
                            false,
                        ));
                    }
                }
                if add_generation_prompt {
                    out.push(("<|im_start|>assistant\n".into(), false));
                }
            }
            ChatTemplate::Llama3 => {
                out.push(("<|begin_of_text|>".into(), false));
                for m in messages {
                    out.push((
                        format!("<|start_header_id|>{}<|end_header_id|>\n\n", role(m.role)),
                        false,
                    ));
                    let text = format!("{}<|eot_id|>", m.content.trim());
                    out.push((text, m.role == Role::Assistant));
                }
                if add_generation_prompt {
                    out.push(("<|start_header_id|>assistant<|end_header_id|>\n\n".into(), false));
                }
            }
            ChatTemplate::Mistral => {
                out.push(("<s>".into(), false));
                let mut pending_system: Option<&str> = None;
                for m in messages {
                    match m.role {
                        Role::System => pending_system = Some(&m.content),
                        Role::User => {
                            let text = match pending_system.take() {
                                Some(s) => format!("[INST] {s}\n\n{} [/INST]", m.content),
                                None => format!("[INST] {} [/INST]", m.content),
                            };
                            out.push((text, false));
                        }
                        Role::Assistant => out.push((format!("{}</s>", m.content), true)),
                    }
                }
            }
        }
        out
    }

    /// Renders `messages`; with `add_generation_prompt`, ends where the next assistant turn's
    /// text begins.
    pub fn render(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Rendered> {
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        let mut turns = Vec::new();
        for (text, assistant) in self.segments(messages, add_generation_prompt) {
            let seg = tok.encode(&text)?;
            let start = ids.len();
            mask.extend(std::iter::repeat_n(assistant, seg.len()));
            ids.extend(seg);
            if assistant {
                turns.push(start..ids.len());
            }
        }
        Ok(Rendered { ids, assistant_mask: mask, assistant_turns: turns })
    }

    /// The rendered text (for display and debugging).
    pub fn render_text(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        self.segments(messages, add_generation_prompt).into_iter().map(|(t, _)| t).collect()
    }
}

/// The literal default system prompt of a ChatML Jinja template, e.g. SmolLM2's
/// `You are a helpful AI assistant named SmolLM, trained by Hugging Face`.
fn chatml_default_system(jinja: &str) -> Option<String> {
    let marker = "<|im_start|>system\\n";
    let start = jinja.find(marker)? + marker.len();
    let rest = &jinja[start..];
    let end = rest.find("<|im_end|>")?;
    let text = &rest[..end];
    if text.contains('{') || text.contains('\'') && !text.contains("\\'") {
        return None;
    }
    Some(text.replace("\\n", "\n").replace("\\'", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<Message> {
        vec![
            Message::user("Go to the kitchen."),
            Message::assistant("Thought: go.\nAction: go to kitchen"),
            Message::user("You arrive."),
            Message::assistant("Action: look"),
        ]
    }

    #[test]
    fn chatml_text_matches_the_reference_layout() {
        let t = ChatTemplate::ChatMl { default_system: Some("Be brief.".into()) };
        let text = t.render_text(&conversation()[..1], true);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nGo to the kitchen.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn assistant_mask_covers_exactly_the_assistant_text_and_end_of_turn() {
        let tok = crate::tokenizer::tests::tiny();
        let t = ChatTemplate::ChatMl { default_system: None };
        let r = t.render(&tok, &conversation(), false).unwrap();
        assert_eq!(r.ids.len(), r.assistant_mask.len());
        assert_eq!(r.assistant_turns.len(), 2);
        let end = tok.token_id("<|im_end|>").unwrap();
        for span in &r.assistant_turns {
            assert_eq!(r.ids[span.end - 1], end);
            assert!(tok.decode(&r.ids[span.clone()]).unwrap().ends_with("<|im_end|>"));
        }
        assert_eq!(
            tok.decode(&r.ids[r.assistant_turns[1].clone()]).unwrap(),
            "Action: look<|im_end|>"
        );
        let masked: usize = r.assistant_mask.iter().filter(|&&m| m).count();
        assert_eq!(masked, r.assistant_turns.iter().map(|s| s.len()).sum::<usize>());
        // The whole text decodes back to the template's text.
        assert_eq!(tok.decode(&r.ids).unwrap(), t.render_text(&conversation(), false));
    }

    #[test]
    fn detects_families_and_smollm_default_system() {
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(
            ChatTemplate::detect(smol),
            Some(ChatTemplate::ChatMl {
                default_system: Some(
                    "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
                )
            })
        );
        assert_eq!(ChatTemplate::detect("{{ '<|start_header_id|>' }}"), Some(ChatTemplate::Llama3));
        assert_eq!(ChatTemplate::detect("{{ '[INST] ' }}"), Some(ChatTemplate::Mistral));
        assert_eq!(ChatTemplate::detect("{{ plain }}"), None);
    }

    #[test]
    fn llama3_and_mistral_layouts() {
        let msgs = vec![
            Message { role: Role::System, content: "S".into() },
            Message::user("U"),
            Message::assistant("A"),
        ];
        assert_eq!(
            ChatTemplate::Llama3.render_text(&msgs, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
        );
        assert_eq!(
            ChatTemplate::Mistral.render_text(&msgs, false),
            "<s>[INST] S\n\nU [/INST]A</s>"
        );
    }
}
