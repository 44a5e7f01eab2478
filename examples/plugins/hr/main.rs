//! hr: an MDSA domain plugin for workplace and HR questions (leave,
//! payslips, onboarding, performance reviews, workplace conflict, remote
//! work), written in Rust with the single-file SDK in sdk/rust/mdsa.rs.
//! It gives general information, never legal advice, and always carries a
//! disclaimer. Build with ./build.sh (hr.wasm is written next to this file).

#[path = "../../../sdk/rust/mdsa.rs"]
mod mdsa;

use mdsa::*;

const DISCLAIMER: &str = "This is general information, not legal or HR advice for your situation. \
Policies and employment law differ by employer and country: check your contract, the employee \
handbook or your HR team, and for a dispute an employment adviser or union representative.";

const KEYWORDS: &[&str] = &[
    "hr", "human resources", "annual leave", "sick leave", "parental leave", "maternity leave",
    "paternity leave", "bereavement leave", "vacation days", "pto", "time off", "holiday entitlement",
    "payslip", "pay slip", "payroll", "pay stub", "deductions", "overtime", "timesheet", "onboarding",
    "new hire", "probation", "probation period", "performance review", "appraisal", "performance improvement plan",
    "pip", "promotion", "pay rise", "raise", "manager", "line manager", "coworker", "colleague", "workplace",
    "harassment", "bullying", "discrimination", "grievance", "disciplinary", "remote work", "hybrid work",
    "work from home", "flexible working", "employee handbook", "employment contract", "notice period",
    "resignation", "resign", "redundancy", "layoff", "dismissal", "fired", "exit interview", "benefits",
    "employer", "employee", "job offer", "reference letter", "whistleblowing", "union", "shift",
    "written warning", "salary", "wages", "salary negotiation", "on call", "unpaid leave", "jury duty",
    "contractor", "zero-hours contract", "at-will employment", "constructive dismissal",
    "reasonable adjustments", "hr department", "micromanaging", "counteroffer", "garden leave",
];

const EXAMPLES: &[&str] = &[
    // Leave and time off
    "How many days of annual leave am I entitled to if I work four days a week?",
    "Can my employer refuse my holiday request if I asked months in advance?",
    "what happens to my unused vacation days when I quit",
    "Do I need a doctor's note if I'm off sick for three days?",
    "How does maternity leave work and when should I tell my manager I'm pregnant?",
    "is my partner entitled to paternity leave if we're adopting",
    "My grandmother died, how much bereavement leave can I take?",
    "Can I carry over PTO into next year?",
    "my boss keeps calling me while I'm on vacation, is that allowed",
    "Do bank holidays count towards my annual leave allowance?",
    // Payslips and pay
    "What are all these deductions on my payslip?",
    "my pay slip shows the wrong number of hours, who do I talk to",
    "Why is my first paycheck at the new job smaller than I expected?",
    "How is overtime calculated if I work on a weekend?",
    "I was underpaid last month, how do I get payroll to fix it?",
    "what does the tax code on my payslip mean",
    "Am I entitled to be paid for the time I spend in mandatory training?",
    "How do I ask for a pay rise without sounding pushy?",
    // Onboarding and contracts
    "What should I expect in my first week of onboarding?",
    "I start a new job on Monday, what documents will HR need from me?",
    "How long is a typical probation period and can it be extended?",
    "My employment contract says 40 hours but I'm working 50, what can I do?",
    "what should I check in a job offer before I sign it",
    "Is a non-compete clause in my contract enforceable?",
    "How much notice do I have to give when I resign?",
    "can my employer change my job description without asking me",
    // Performance reviews and career
    "How should I prepare for my annual performance review?",
    "My manager gave me a bad appraisal that I think is unfair, how do I respond?",
    "I've been put on a performance improvement plan, does that mean I'm getting fired?",
    "how do I write a self-assessment for my review",
    "What's the best way to ask my manager about a promotion?",
    "how do I give constructive feedback to a colleague",
    "Can I ask HR to see my personnel file?",
    // Workplace conflict
    "A coworker keeps taking credit for my work, how do I handle it?",
    "My manager yells at me in meetings, is this workplace bullying?",
    "how do I report sexual harassment at work confidentially",
    "I think I was passed over for promotion because of my age, what can I do?",
    "What's the difference between a grievance and a complaint?",
    "I've been invited to a disciplinary meeting, can I bring someone with me?",
    "Two people on my team don't get along and it's affecting everyone, how do I mediate as their lead?",
    "can I be disciplined for something I posted on social media",
    "how do I raise a concern about safety at work without getting in trouble",
    // Remote, hybrid and flexible work
    "Can my company force me to come back to the office five days a week?",
    "How do I request flexible working hours for childcare?",
    "Does my employer have to pay for my home office equipment?",
    "what should a good remote work policy cover",
    "Am I allowed to work remotely from another country for a month?",
    "how do I stay visible to my manager when I work from home",
    // Leaving, redundancy and other
    "What is redundancy pay and how is it calculated?",
    "I was let go without any warning, was that legal?",
    "Should I do the exit interview honestly?",
    "can my old employer refuse to give me a reference",
    "what are my rights if my company is laying off staff next month",
    "How does an employee assistance program work?",
    "What benefits should I ask about when comparing two job offers?",
    "is it normal for HR to ask for my medical history",
    "How do I tell my manager I'm burned out and need time off?",
    "Can I join a union without my employer knowing?",
    "my shift pattern changed with one day's notice, is that okay",
    "what should be in an employee handbook for a small company",
    // More leave and time off
    "How much notice do I need to give before taking a week of holiday?",
    "Can I take unpaid leave to care for a sick parent?",
    "do I get paid for jury duty",
    "What happens to my holiday allowance while I'm on maternity leave?",
    "Can my manager cancel my approved vacation at the last minute?",
    "I was sick on a day I'd booked as annual leave, can I get the day back?",
    "How does shared parental leave work?",
    "is there such a thing as mental health days at work",
    // More pay
    "I haven't received my salary this month, what should I do?",
    "Why was my bonus taxed more than my normal pay?",
    "how do I read the year-to-date figures on a pay stub",
    "Should I be paid extra for being on call?",
    "My employer deducted money from my wages for a broken laptop, is that allowed?",
    "How do I negotiate a higher salary for a new role?",
    "When do I get my final paycheck after leaving a job?",
    "What's the difference between salaried and hourly employees when it comes to overtime?",
    // More onboarding and contracts
    "What questions should I ask on my first day at a new job?",
    "My new employer wants a background check, what do they look at?",
    "Is a verbal job offer binding?",
    "What is garden leave?",
    "Can my employer make me sign a new contract with worse terms?",
    "I'm a contractor, am I entitled to the same benefits as employees?",
    "how long do I have to wait before I can take holiday at a new job",
    "What is a zero-hours contract?",
    // More performance and development
    "What should I do if my manager never gives me any feedback?",
    "How do I set good goals for the next review cycle?",
    "Can I still get a bonus if my rating was only meets expectations?",
    "How do I respond to negative 360 feedback?",
    "My probation review is next week and I'm nervous, how do I prepare?",
    "How can I ask for more training or a development budget?",
    // More conflict and discipline
    "I received a written warning, can I appeal it?",
    "What happens at a grievance hearing?",
    "A colleague makes racist jokes at work, how should I report it?",
    "How do I deal with a micromanaging boss?",
    "My manager is retaliating against me after I complained, what now?",
    "Is it okay to date a coworker?",
    "How do I handle a team member who is always late?",
    "What is constructive dismissal?",
    "Can HR share my complaint with the person I complained about?",
    // More remote and flexible work
    "How do I set boundaries when working from home?",
    "Can my employer monitor my laptop while I work remotely?",
    "Is my employer responsible for my safety when I work from home?",
    "Can I ask to work compressed hours?",
    "Do I get a stipend for internet costs when I'm fully remote?",
    "How many office days a week are normal in a hybrid work policy?",
    // More leaving and general
    "How do I write a resignation letter?",
    "My company is making me redundant, what should I ask HR?",
    "Can I be fired while I'm on sick leave?",
    "What does at-will employment mean?",
    "How should I handle a counteroffer from my current employer?",
    "What reasonable adjustments can I ask for at work if I have ADHD?",
    "What does the HR department actually do?",
];

const SYSTEM: &str = "You are a knowledgeable, even-handed workplace and HR assistant. You explain leave \
and time off, pay and payslips, onboarding and contracts, performance reviews, workplace conflict, \
and remote or flexible work in plain language. Give general information and practical next steps \
(what to check in the contract or handbook, whom to ask, how to document an issue); do not give \
legal advice, do not predict the outcome of a dispute, and say when rules depend on the country or \
the employer's own policy. Be fair to both employees and managers, never suggest retaliating, \
lying or hiding facts, and do not repeat personal details such as email addresses. Keep answers \
under 250 words unless asked for more. The user's country, if known: {{context.country|not stated}}.";

fn plugin() -> Plugin {
    Plugin::new("hr", "1.0.0")
        .description("Workplace and HR questions: leave, payslips, onboarding, performance reviews, workplace conflict and remote work (general information).")
        .keywords(KEYWORDS)
        .examples(EXAMPLES)
        .tier(TIER_DOMAIN)
        .prefer(&["qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct"])
        .min_context(2048)
        .generation(Generation {
            max_tokens: 400,
            temperature: Some(0.3),
            top_p: Some(0.9),
            top_k: 40,
            repeat_penalty: Some(1.1),
            ..Generation::default()
        })
        .capabilities(&[CAP_GENERATE])
        .system(SYSTEM)
        .template("{{query}}")
        .max_history(8)
        .validator(min_length(1))
        .validator(max_length(2500))
        .validator(banned_terms(&[
            "guaranteed to win",
            "you will definitely win",
            "you will win your case",
            "they cannot fire you",
            "they can't fire you",
            "definitely illegal",
            "lie to hr",
            "lie to your manager",
            "backdate the timesheet",
        ]))
        .validator(redact_emails_validator())
        .validator(require_disclaimer(
            DISCLAIMER,
            &["not legal advice", "not legal or hr advice", "this is general information"],
        ))
}

export_plugin!(plugin);
