"""The licences wing: the sourced registry (`licensing`, from `data/licenses.json`), the licence policy (`policy`),
a model card's licence fields (`model_card`) and the provenance every result carries (`provenance`)."""
