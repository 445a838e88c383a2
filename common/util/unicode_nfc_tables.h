/* unicode_nfc_tables.h - the generated tables behind unicode_nfc.c (see
 * tools/make_unicode_nfc_tables.py); nothing else includes this. */
#ifndef HYDRA_UNICODE_NFC_TABLES_H
#define HYDRA_UNICODE_NFC_TABLES_H

#include <stddef.h>
#include <stdint.h>

#define UNICODE_NFC_BLOCK_SHIFT 7

enum { UNICODE_NFC_QC_YES = 0, UNICODE_NFC_QC_MAYBE = 1, UNICODE_NFC_QC_NO = 2 };

typedef struct {
  uint8_t ccc;         /* canonical combining class */
  uint8_t quick_check; /* NFC_Quick_Check: UNICODE_NFC_QC_* */
  uint16_t offset;     /* full canonical decomposition: unicode_nfc_decompositions[offset ..] */
  uint16_t len;        /* 0: none */
} unicode_nfc_record_t;

typedef struct {
  uint32_t first, second, composite;
} unicode_nfc_pair_t;

extern const char UNICODE_NFC_VERSION[];
extern const uint16_t unicode_nfc_stage1[];
extern const uint16_t unicode_nfc_stage2[][1 << UNICODE_NFC_BLOCK_SHIFT];
extern const unicode_nfc_record_t unicode_nfc_records[];
extern const uint32_t unicode_nfc_decompositions[];
extern const unicode_nfc_pair_t unicode_nfc_pairs[];
extern const size_t unicode_nfc_n_pairs;

#endif
