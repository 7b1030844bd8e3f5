"""The papers' high-resolution modules: GSWA (SleighVL), SliceRestore + Self-Mining (HiRes-LLaVA), DEM
(INF-LLaVA), the SliME connector, and static-shape token layouts (flat, LLaVA-NeXT anyres)."""
