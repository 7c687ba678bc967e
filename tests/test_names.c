/* Tests for the name tables (names.h) and the tables built on them: lookup
 * both ways, aliases, the "a, b or c" lists messages print, and that every
 * registered name of every enumeration is found and listed. */
#include <stdlib.h>
#include <string.h>

#include "ffn/act.h"
#include "ffn/config.h"
#include "ffn/init.h"
#include "ffn/loss.h"
#include "ffn/names.h"
#include "ffn/optim.h"
#include "ffn/prune.h"
#include "check.h"

static void test_lists(void)
{
    static const char *const none[] = {NULL};
    static const char *const one[] = {"a"};
    static const char *const two[] = {"a", "b"};
    static const char *const four[] = {"a", NULL, "bb", "c", "d"};
    const ffn_names t0 = FFN_NAMES_OF_ARRAY(none), t1 = FFN_NAMES_OF_ARRAY(one), t2 = FFN_NAMES_OF_ARRAY(two),
                    t4 = FFN_NAMES_OF_ARRAY(four);
    char buf[64];
    CHECK(strcmp(ffn_names_list(&t0, buf, sizeof buf), "") == 0);
    CHECK(strcmp(ffn_names_list(&t1, buf, sizeof buf), "a") == 0);
    CHECK(strcmp(ffn_names_list(&t2, buf, sizeof buf), "a or b") == 0);
    CHECK_MSG(strcmp(ffn_names_list(&t4, buf, sizeof buf), "a, bb, c or d") == 0, "got '%s'", buf);
    /* Cut at the capacity, always terminated, never a partial name. */
    CHECK_MSG(strcmp(ffn_names_list(&t4, buf, 8), "a, bb") == 0, "got '%s'", buf);
    CHECK(ffn_names_list(&t4, buf, 0) == buf);

    /* A value without a name is neither found nor named. */
    CHECK(ffn_names_find(&t4, "bb") == 2 && ffn_names_find(&t4, "d") == 4);
    CHECK(ffn_names_find(&t4, "") == -1 && ffn_names_find(&t4, NULL) == -1 && ffn_names_find(&t4, "b") == -1);
    CHECK(strcmp(ffn_names_name(&t4, 1), "unknown") == 0);
    CHECK(strcmp(ffn_names_name(&t4, 5), "unknown") == 0 && strcmp(ffn_names_name(&t4, -1), "unknown") == 0);
    CHECK(strcmp(ffn_names_name(&t4, 3), "c") == 0);

    /* Names as a field of a table of structs; aliases found, never listed. */
    static const struct {
        int weight;
        const char *name;
    } rows[] = {{7, "x"}, {8, "y"}};
    static const ffn_name_alias aliases[] = {{"why", 1}};
    ffn_names tr = FFN_NAMES_OF_FIELD(rows, name);
    tr.aliases = aliases;
    tr.alias_count = 1;
    CHECK(ffn_names_find(&tr, "y") == 1 && ffn_names_find(&tr, "why") == 1 && ffn_names_find(&tr, "x") == 0);
    CHECK(strcmp(ffn_names_name(&tr, 1), "y") == 0);
    CHECK(strcmp(ffn_names_list(&tr, buf, sizeof buf), "x or y") == 0);
}

/* Every value of t has a name that finds it and stands in the list. */
static void check_table(const char *what, const ffn_names *t, size_t count, const char *list)
{
    char buf[FFN_NAMES_LIST_MAX];
    CHECK_MSG(t->count == count, "%s: %zu names for %zu values", what, t->count, count);
    CHECK_MSG(strcmp(ffn_names_list(t, buf, sizeof buf), list) == 0, "%s: list '%s'", what, buf);
    for (size_t v = 0; v < t->count; v++) {
        const char *name = ffn_names_name(t, (int)v);
        CHECK_MSG(ffn_names_find(t, name) == (int)v, "%s: '%s' is not found as %zu", what, name, v);
        CHECK_MSG(strstr(buf, name) != NULL, "%s: '%s' missing from '%s'", what, name, buf);
    }
}

static void test_registered_tables(void)
{
    check_table("loss", &ffn_loss_names, FFN_LOSS_COUNT, "mse, bce or softmax_ce");
    check_table("optimizer", &ffn_opt_names, FFN_OPT_COUNT, "sgd, adam, adamw or rmsprop");
    check_table("lr schedule", &ffn_lr_names, FFN_LR_COUNT, "constant, step or cosine");
    check_table("prune scope", &ffn_prune_scope_names, FFN_PRUNE_SCOPE_COUNT, "layer or global");
    check_table("activation", &ffn_act_names, FFN_ACT_COUNT,
                "identity, relu, leaky_relu, sigmoid, tanh, gelu or softmax");
    check_table("init", &ffn_init_names, FFN_INIT_COUNT,
                "zeros, uniform, normal, xavier_uniform, xavier_normal, he_uniform, he_normal, lecun_uniform or "
                "lecun_normal");
    /* The public lookups go through the same tables, aliases included. */
    CHECK(ffn_act_from_name("linear") == FFN_ACT_IDENTITY && ffn_act_from_name("none") == FFN_ACT_IDENTITY);
    CHECK(ffn_init_from_name("glorot_uniform") == FFN_INIT_XAVIER_UNIFORM);
    CHECK(ffn_init_from_name("glorot_normal") == FFN_INIT_XAVIER_NORMAL);
    CHECK(ffn_init_from_name("kaiming_uniform") == FFN_INIT_HE_UNIFORM);
    CHECK(ffn_init_from_name("kaiming_normal") == FFN_INIT_HE_NORMAL);
    CHECK(ffn_init_from_name("xavier") == FFN_INIT_XAVIER_UNIFORM && ffn_init_from_name("he") == FFN_INIT_HE_NORMAL);
    CHECK(ffn_init_from_name("kaiming") == FFN_INIT_HE_NORMAL && ffn_init_from_name("lecun") == FFN_INIT_LECUN_NORMAL);
    CHECK(ffn_loss_from_name("softmax_ce") == FFN_LOSS_SOFTMAX_CE && ffn_loss_from_name("ce") == -1);
    CHECK(ffn_prune_scope_from_name("global") == FFN_PRUNE_GLOBAL && ffn_prune_scope_from_name(NULL) == -1);
    CHECK(strcmp(ffn_loss_name((ffn_loss)FFN_LOSS_COUNT), "unknown") == 0);
    CHECK(strcmp(ffn_act_name((ffn_act)-1), "unknown") == 0);
}

/* Parses one flag (after --train) and returns the status; the message is ffn_last_error(). */
static ffn_status parse_flag(ffn_train_config *cfg, const char *flag, const char *value)
{
    ffn_config_defaults(cfg);
    char *argv[] = {"ffn-train", "--train", "t.h5", (char *)flag, (char *)value, NULL};
    int help = 0;
    ffn_status st = ffn_config_parse(cfg, 5, argv, &help);
    return st == FFN_OK ? ffn_config_validate(cfg) : st;
}

static void test_config_messages(void)
{
    static const struct {
        const char *flag, *message;
    } cases[] = {
        {"--loss", "--loss: expected mse, bce or softmax_ce, got 'hinge'"},
        {"--optimizer", "--optimizer: expected sgd, adam, adamw or rmsprop, got 'hinge'"},
        {"--lr-schedule", "--lr-schedule: expected constant, step or cosine, got 'hinge'"},
        {"--progress", "--progress: expected auto, on or off, got 'hinge'"},
        {"--prune-scope", "--prune-scope: expected layer or global, got 'hinge'"},
    };
    ffn_train_config cfg;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(parse_flag(&cfg, cases[i].flag, "hinge") == FFN_ERR_ARG);
        CHECK_MSG(strcmp(ffn_last_error(), cases[i].message) == 0, "%s: '%s'", cases[i].flag, ffn_last_error());
    }
    CHECK(parse_flag(&cfg, "--loss", "bce") == FFN_OK && cfg.loss == FFN_LOSS_BCE);
    CHECK(parse_flag(&cfg, "--optimizer", "rmsprop") == FFN_OK && cfg.optimizer == FFN_OPT_RMSPROP);
    CHECK(parse_flag(&cfg, "--lr-schedule", "cosine") == FFN_OK && cfg.lr_schedule == FFN_LR_COSINE);
    CHECK(parse_flag(&cfg, "--progress", "auto") == FFN_OK && cfg.progress == -1);
    CHECK(parse_flag(&cfg, "--progress", "on") == FFN_OK && cfg.progress == 1);
    CHECK(parse_flag(&cfg, "--progress", "off") == FFN_OK && cfg.progress == 0);
    CHECK(parse_flag(&cfg, "--prune-scope", "global") == FFN_OK && cfg.prune_scope_kind == FFN_PRUNE_GLOBAL);
    /* The JSON copy names the values with the same tables. */
    CHECK(parse_flag(&cfg, "--optimizer", "adamw") == FFN_OK);
    char *json = ffn_config_to_json(&cfg);
    CHECK(json && strstr(json, "\"optimizer\":\"adamw\"") && strstr(json, "\"progress\":\"auto\"") &&
          strstr(json, "\"loss\":\"softmax_ce\"") && strstr(json, "\"lr-schedule\":\"constant\""));
    free(json);
}

int main(void)
{
    test_lists();
    test_registered_tables();
    test_config_messages();
    return check_done("test_names");
}
