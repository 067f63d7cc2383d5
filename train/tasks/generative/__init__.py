"""What the generative tasks share: records as conversations, generation, metrics (ROUGE / BLEU / chrF / exact
match / token F1) and the GenerativeTask base that causal_lm and seq2seq build on."""
